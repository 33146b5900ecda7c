/*! jquery.feedgate.js | jQuery 3.x plugin on top of feedgate.js (load feedgate.js first) */
/* $(el).feedgate({topic, login, token, max, ...}) shows a live list of the topic's items in el
 * (Feedgate.widget); $(el).feedgate('close') ends it. The element also triggers jQuery events:
 * feedgate:items (items, info), feedgate:status (state, detail), feedgate:error (error).
 * $.feedgate.retrieve({topic, login, token, count, after, before}) answers a jQuery promise of
 * the retrieve answer (fetch with CORS, else JSONP). $.feedgate.connect is Feedgate.connect. */
(function ($, Feedgate) {
  'use strict';
  if (!$ || !Feedgate) {
    throw new Error('jquery.feedgate.js needs jQuery and feedgate.js loaded before it');
  }
  const KEY = 'feedgate';

  $.fn.feedgate = function (options) {
    return this.each(function () {
      const $el = $(this);
      const old = $el.data(KEY);
      if (old) {
        old.close();
        $el.removeData(KEY);
      }
      if (options === 'close' || options === 'destroy') return;
      const o = $.extend({}, $.fn.feedgate.defaults, options);
      const user = {onItems: o.onItems, onStatus: o.onStatus, onError: o.onError};
      $el.data(KEY, Feedgate.widget(this, $.extend(o, {
        onItems(items, info) {
          if (user.onItems) user.onItems.call(this, items, info);
          $el.trigger('feedgate:items', [items, info]);
        },
        onStatus(state, detail) {
          if (user.onStatus) user.onStatus.call(this, state, detail);
          $el.trigger('feedgate:status', [state, detail]);
        },
        onError(err) {
          if (user.onError) user.onError.call(this, err);
          $el.trigger('feedgate:error', [err]);
        },
      })));
    });
  };

  /** Options every $(el).feedgate() starts from (hub, login, token, max, count, ...). */
  $.fn.feedgate.defaults = {};

  $.feedgate = {
    /** retrieve answers a jQuery promise of the JSON retrieve answer. */
    retrieve(options) {
      const d = $.Deferred();
      Feedgate.retrieve($.extend({}, $.fn.feedgate.defaults, options)).then(d.resolve, d.reject);
      return d.promise();
    },
    connect(options) {
      return Feedgate.connect($.extend({}, $.fn.feedgate.defaults, options));
    },
  };
})(window.jQuery, window.Feedgate);
