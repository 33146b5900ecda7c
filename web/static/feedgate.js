/*! feedgate.js | live feed items from a feedgate gateway | no dependencies */
/* Feedgate.connect({topic, login, token, count, onItems, onStatus, onError}) reads the last
 * `count` items (fetch with CORS, else JSONP), then goes live by Server-Sent Events, falling back
 * to WebSocket, then to long-polling; it resumes from the newest cursor seen, with back-off, and
 * never delivers an item twice. Feedgate.widget(element, options) shows them, newest on top,
 * inserting feed text as text, never as HTML. */
(function (root, factory) {
  const Feedgate = factory(root);
  if (typeof module === 'object' && module.exports) module.exports = Feedgate;
  else root.Feedgate = Feedgate;
})(typeof self !== 'undefined' ? self : this, function (root) {
  'use strict';

  const doc = root.document;
  const loc = root.location;
  const script = doc && doc.currentScript;
  // The gateway that served this script is the default hub.
  const DEFAULT_HUB = script && script.src ? new URL('.', script.src).href : loc ? loc.origin + '/' : '';
  // Errors that retrying cannot fix: the request or the token must change.
  const FATAL = [400, 401, 403, 404, 405, 410, 413, 414, 415, 422];
  const KINDS = ['sse', 'ws', 'poll'];
  const POLL_TIMEOUT = 25;
  const jsonpOrigins = new Set();
  let seq = 0;

  class FeedgateError extends Error {
    constructor(code, message) {
      super(message);
      this.name = 'FeedgateError';
      this.code = code;
      this.fatal = FATAL.includes(code);
    }
  }

  const late = () => new FeedgateError(0, 'the gateway did not answer in time');
  const unreachable = hub => new FeedgateError(0, 'could not reach the gateway at ' + new URL(hub).host);

  function toError(e) {
    return e instanceof FeedgateError ? e : new FeedgateError(e && e.code || 0, e && e.message || String(e));
  }

  // Cursors are fixed-width decimal strings; compare by length, then by text.
  function cmp(a, b) {
    return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  }

  function b64(s) {
    return btoa(String.fromCharCode(...new TextEncoder().encode(s)));
  }

  function credentials(o) {
    return o.login ? b64(o.login + ':' + (o.token || '')) : o.authorization || '';
  }

  function hubURL(o) {
    return new URL(o.hub || DEFAULT_HUB, loc && loc.href).href;
  }

  function build(hub, params) {
    const u = new URL(hub);
    for (const [k, v] of params) if (v != null && v !== '') u.searchParams.append(k, v);
    return u;
  }

  // A signal that aborts after ms or with parent; done() drops the link to parent.
  function deadline(ms, parent) {
    const c = new AbortController();
    const stop = () => c.abort();
    const t = setTimeout(stop, ms);
    if (parent) parent.addEventListener('abort', stop);
    c.done = () => { clearTimeout(t); if (parent) parent.removeEventListener('abort', stop); };
    return c;
  }

  async function viaFetch(hub, params, auth, signal, ms) {
    const headers = {Accept: 'application/json'};
    if (auth) headers.Authorization = 'Basic ' + auth;
    const c = deadline(ms, signal);
    try {
      const r = await fetch(build(hub, params.concat([['format', 'json']])), {headers, signal: c.signal, credentials: 'omit', cache: 'no-store'});
      let body = null;
      try { body = await r.json(); } catch (e) { /* not JSON: use the status */ }
      if (body && body.error) throw new FeedgateError(body.error.code || r.status, body.error.message || r.statusText);
      if (!r.ok || !body) throw new FeedgateError(r.status, 'the gateway answered ' + r.status + ' ' + r.statusText);
      return body;
    } catch (e) {
      if (e.name === 'AbortError' && !(signal && signal.aborted)) throw late();
      throw e;
    } finally {
      c.done();
    }
  }

  // JSONP: a <script> calls back even on errors (the gateway answers them with status 200).
  function viaJSONP(hub, params, auth, signal, ms) {
    return new Promise((resolve, reject) => {
      const name = '__feedgate' + (++seq) + '_' + Math.random().toString(36).slice(2, 8);
      const s = doc.createElement('script');
      let done = false;
      const finish = (ok, v) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (signal) signal.removeEventListener('abort', onAbort);
        s.remove();
        // A late answer must still find a function; it removes itself.
        root[name] = () => { delete root[name]; };
        if (ok) delete root[name];
        (ok ? resolve : reject)(v);
      };
      root[name] = body => {
        if (body && body.error) finish(false, new FeedgateError(body.error.code || 0, body.error.message || 'error'));
        else finish(true, body);
      };
      s.onerror = () => finish(false, unreachable(hub));
      const timer = setTimeout(() => finish(false, late()), ms);
      const onAbort = () => finish(false, new DOMException('aborted', 'AbortError'));
      if (signal) signal.addEventListener('abort', onAbort);
      s.async = true;
      s.src = build(hub, params.concat([['callback', name], ['authorization', auth]])).href;
      (doc.head || doc.documentElement).appendChild(s);
    });
  }

  // loaded resolves once the page has loaded (at once outside a page).
  const loaded = () => !doc || doc.readyState === 'complete' ? Promise.resolve()
    : new Promise(r => root.addEventListener('load', r, { once: true }));

  // request answers a retrieve: by fetch (same origin, or CORS), else by JSONP.
  async function request(hub, params, auth, signal, ms) {
    const origin = new URL(hub).origin;
    if (!doc || !jsonpOrigins.has(origin)) {
      try {
        return await viaFetch(hub, params, auth, signal, ms);
      } catch (e) {
        // A TypeError is a network or CORS failure; JSONP may still get through.
        if (!(e instanceof TypeError)) throw e;
        if (!doc || (loc && origin === loc.origin)) throw unreachable(hub);
      }
    }
    const body = await viaJSONP(hub, params, auth, signal, ms);
    jsonpOrigins.add(origin);
    return body;
  }

  /** retrieve answers hub.mode=retrieve as JSON: {topic, login, token, count, after, before, hub}. */
  function retrieve(o, signal) {
    const params = [['hub.mode', 'retrieve'], ['hub.topic', o.topic], ['count', o.count], ['after', o.after], ['before', o.before]];
    return request(hubURL(o), params, credentials(o), signal, o.timeout || 15000).catch(e => { throw e.name === 'AbortError' ? e : toError(e); });
  }

  /** connect delivers the last items of the topics, then every new one; close() ends it. */
  function connect(o) {
    const topics = [].concat(o.topics || o.topic || []).filter(Boolean);
    if (!topics.length) throw new TypeError('Feedgate.connect needs a topic (or topics)');
    const hub = hubURL(o);
    const auth = credentials(o);
    const count = o.count || 10;
    const kinds = (o.transports || KINDS).filter(k => k === 'sse' ? root.EventSource : k === 'ws' ? root.WebSocket : k === 'poll');
    const last = new Map(); // topic -> newest cursor delivered
    let token = ''; // the last SSE event id: a resume token covering every topic
    let kind = 0, tries = 0, openedAt = 0, gen = 0, timer = 0;
    let es = null, ws = null, ctl = null, closed = false;

    const h = {
      state: 'connecting', transport: '', cursors: last,
      close() {
        if (closed) return;
        closed = true;
        teardown();
        clearTimeout(timer);
        status('closed');
      },
      /** reconnect drops the live connection and resumes after ms (default: at once). */
      reconnect(ms) {
        if (closed || h.state === 'error') return;
        teardown();
        clearTimeout(timer);
        status('reconnecting');
        timer = setTimeout(live, ms || 0);
      },
    };

    function status(s, detail) {
      h.state = s;
      if (o.onStatus) o.onStatus(s, detail || '');
    }

    function report(e) {
      if (o.onError) o.onError(e);
    }

    function stop(e) {
      teardown();
      status('error', e.message);
      report(e);
    }

    function deliver(n, topic) {
      if (!n || typeof n !== 'object') return;
      if (n.error) {
        const e = toError(n.error);
        return e.code === 401 ? stop(e) : report(e);
      }
      const st = n.status || {};
      topic = st.feed || topic || topics[0];
      const hw = last.get(topic);
      const fresh = [];
      let top = hw;
      for (const it of n.items || []) {
        if (!it || typeof it.cursor !== 'string' || (hw && cmp(it.cursor, hw) <= 0)) continue;
        if (fresh.some(f => f.cursor === it.cursor)) continue;
        it.topic = topic;
        fresh.push(it);
        if (!top || cmp(it.cursor, top) > 0) top = it.cursor;
      }
      if (top) last.set(topic, top);
      if (fresh.length && o.onItems) o.onItems(fresh, {topic, title: n.title || st.title || '', status: st});
    }

    // Back-off with jitter: 0.5 s doubling up to 30 s.
    function wait() {
      return Math.min(30000, 500 * 2 ** tries++) * (0.5 + Math.random() / 2);
    }

    function teardown() {
      gen++;
      if (es) es.close();
      if (ws) { ws.onclose = null; ws.close(); }
      if (ctl) ctl.abort();
      es = ws = ctl = null;
    }

    function opened(name) {
      openedAt = Date.now();
      h.transport = name;
      status('live', name);
    }

    // check reads one item of each topic: it tells a dead network from a refused token.
    function check() {
      ctl = new AbortController();
      const sig = ctl.signal;
      return Promise.all(topics.map(t => retrieve({hub, topic: t, authorization: auth, count: 1}, sig)));
    }

    // lost is called when a live connection ends; fresh: it never opened.
    function lost(g, fresh) {
      if (g !== gen || closed) return;
      teardown();
      // A transport that never opened even once here may be unsupported on the way.
      const untried = fresh && h.transport !== kinds[kind];
      if (Date.now() - openedAt > 10000) tries = 0;
      status('reconnecting', h.transport);
      const again = () => check().then(() => {
        // The gateway answers, yet this transport never opened: try the next one.
        if (untried && kind < kinds.length - 1) { kind++; tries = 0; }
        live();
      }, e => {
        if (e.name === 'AbortError' || closed) return;
        if (e.fatal) return stop(e);
        timer = setTimeout(again, wait());
      });
      timer = setTimeout(again, untried ? 0 : wait());
    }

    function live() {
      if (closed) return;
      teardown();
      const g = gen;
      const name = kinds[kind];
      if (name === 'sse') sse(g);
      else if (name === 'ws') socket(g);
      else poll(g);
    }

    function base(t) {
      return [['hub.mode', 'retrieve'], ['hub.topic', t]];
    }

    function sse(g) {
      const params = [['hub.mode', 'retrieve']].concat(topics.map(t => ['hub.topic', t]),
        [['format', 'sse'], ['count', count], ['authorization', auth],
          ['lastEventId', token || (topics.length === 1 ? last.get(topics[0]) : '')]]);
      const src = es = new EventSource(build(hub, params).href);
      let open = false;
      const onMessage = e => {
        if (g !== gen) return;
        if (e.lastEventId) token = e.lastEventId;
        let n;
        try { n = JSON.parse(e.data); } catch (err) { return; }
        deliver(n);
      };
      src.onopen = () => { if (g === gen) { open = true; opened('sse'); } };
      src.onmessage = onMessage;
      src.addEventListener('notification', onMessage);
      src.onerror = e => {
        if (g !== gen) return;
        if (e && e.data) return onMessage(e); // an "error" event sent by the gateway
        // CONNECTING: the browser reconnects by itself, resuming with Last-Event-ID.
        if (src.readyState === 2) lost(g, !open);
        else if (h.state === 'live') status('reconnecting', 'sse');
      };
    }

    function socket(g) {
      const u = build(hub, base(topics[0]).concat([['format', 'json'], ['count', count], ['authorization', auth], ['after', last.get(topics[0])]]));
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      const s = ws = new WebSocket(u.href);
      let open = false;
      s.onopen = () => {
        if (g !== gen) return;
        open = true;
        opened('ws');
        for (const t of topics.slice(1)) s.send(JSON.stringify({mode: 'subscribe', topic: t, after: last.get(t)}));
      };
      s.onmessage = e => {
        if (g !== gen) return;
        let n;
        try { n = JSON.parse(e.data); } catch (err) { return; }
        deliver(n, topics.length === 1 ? topics[0] : '');
      };
      s.onclose = () => lost(g, !open);
    }

    function poll(g) {
      const c = ctl = new AbortController();
      opened('poll');
      topics.forEach(async t => {
        // A held long-poll (a <script> under JSONP) must not hold the page's load event.
        await loaded();
        while (g === gen && !closed) {
          try {
            const n = await request(hub, base(t).concat([['wait', 'poll'], ['timeout', POLL_TIMEOUT], ['count', count], ['after', last.get(t)]]),
              auth, c.signal, (POLL_TIMEOUT + 15) * 1000);
            if (g !== gen) return;
            if (h.state !== 'live') { tries = 0; status('live', 'poll'); }
            deliver(n, t);
          } catch (e) {
            if (g !== gen || e.name === 'AbortError') return;
            const err = toError(e);
            if (err.fatal) return stop(err);
            status('reconnecting', 'poll');
            await new Promise(r => setTimeout(r, wait()));
          }
        }
      });
    }

    async function start() {
      status('connecting');
      ctl = new AbortController();
      const sig = ctl.signal;
      try {
        const answers = await Promise.all(topics.map(t => retrieve({hub, topic: t, authorization: auth, count}, sig)));
        if (closed) return;
        answers.forEach((n, i) => deliver(n, topics[i]));
        tries = 0;
        live();
      } catch (e) {
        if (e.name === 'AbortError' || closed) return;
        if (e.fatal) return stop(e);
        report(e);
        status('reconnecting', e.message);
        timer = setTimeout(start, wait());
      }
    }

    if (!kinds.length) kinds.push('poll');
    start();
    return h;
  }

  // Text of an HTML fragment. A DOMParser document runs no scripts and loads nothing.
  function text(html) {
    if (!html) return '';
    const d = new DOMParser().parseFromString(String(html), 'text/html');
    for (const x of d.querySelectorAll('script,style,template,noscript')) x.remove();
    return (d.body ? d.body.textContent : '').replace(/\s+/g, ' ').trim();
  }

  function safeURL(href) {
    try {
      const u = new URL(href, loc && loc.href);
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : '';
    } catch (e) {
      return '';
    }
  }

  function cut(s, n) {
    return s.length > n ? s.slice(0, n - 1).replace(/\s+$/, '') + '\u2026' : s;
  }

  function el(tag, cls, txt) {
    const e = doc.createElement(tag);
    if (cls) e.className = cls;
    if (txt != null) e.textContent = txt;
    return e;
  }

  const UNITS = [['year', 31536000], ['month', 2592000], ['week', 604800], ['day', 86400], ['hour', 3600], ['minute', 60], ['second', 1]];

  function ago(sec, rtf) {
    const d = sec - Date.now() / 1000;
    for (const [u, n] of UNITS) {
      if (Math.abs(d) >= n || n === 1) {
        const v = Math.round(d / n);
        return rtf ? rtf.format(v, u) : -v + ' ' + u + (v === -1 ? '' : 's') + ' ago';
      }
    }
  }

  const LABELS = {connecting: 'Connecting\u2026', live: 'Live', reconnecting: 'Reconnecting\u2026', error: 'Stopped', closed: 'Closed'};

  /** widget shows the items of connect(options) in element, newest on top. */
  function widget(element, o) {
    const root0 = typeof element === 'string' ? doc.querySelector(element) : element;
    if (!root0) throw new TypeError('Feedgate.widget needs an element');
    o = Object.assign({max: 20, summary: 200}, o);
    // The gateway's stylesheet goes first in <head>, so the page's own rules win.
    if (o.css !== false && !doc.getElementById('feedgate-css')) {
      const l = el('link');
      l.id = 'feedgate-css';
      l.rel = 'stylesheet';
      l.href = new URL(o.css || 'feedgate.css', hubURL(o)).href;
      (doc.head || doc.documentElement).prepend(l);
    }
    const rtf = root.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(o.locale, {numeric: 'auto'}) : null;
    root0.classList.add('feedgate');
    root0.textContent = '';
    const head = el('div', 'feedgate-head');
    if (o.title) head.appendChild(el('strong', 'feedgate-title', o.title));
    const badge = head.appendChild(el('span', 'feedgate-live', LABELS.connecting));
    badge.dataset.state = 'connecting';
    const error = el('p', 'feedgate-error');
    error.setAttribute('role', 'alert');
    error.hidden = true;
    const region = el('div', 'feedgate-log');
    region.setAttribute('role', 'log');
    region.setAttribute('aria-live', 'polite');
    region.setAttribute('aria-label', o.label || 'Latest items');
    const list = region.appendChild(el('ul', 'feedgate-list'));
    const empty = el('p', 'feedgate-empty', o.empty || 'No items yet.');
    root0.append(head, error, region, empty);

    function item(it) {
      const li = el('li', 'feedgate-item');
      li.dataset.cursor = it.cursor;
      li.dataset.topic = it.topic;
      const alt = it.standardLinks && it.standardLinks.alternate && it.standardLinks.alternate[0];
      const href = safeURL(it.permalinkUrl || (alt && alt.href) || '');
      const body = text(it.summary || it.content);
      const a = li.appendChild(el(href ? 'a' : 'span', 'feedgate-link', cut(it.title || body || it.id || '', 300) || '(untitled)'));
      if (href) {
        a.href = href;
        a.rel = 'noopener noreferrer';
        if (o.target) a.target = o.target;
      }
      const when = it.published || it.updated;
      if (when > 0) {
        const t = li.appendChild(el('time', '', ago(when, rtf)));
        t.dateTime = new Date(when * 1000).toISOString();
        t.title = new Date(when * 1000).toLocaleString(o.locale);
        t.dataset.unix = when;
      }
      if (o.summary && body && it.title) li.appendChild(el('p', 'feedgate-summary', cut(body, o.summary)));
      return li;
    }

    const conn = connect(Object.assign({}, o, {
      onItems(items, info) {
        const frag = doc.createDocumentFragment();
        for (const it of items) frag.appendChild(item(it));
        list.insertBefore(frag, list.firstChild);
        while (list.children.length > o.max) list.lastChild.remove();
        empty.hidden = true;
        error.hidden = true;
        if (o.onItems) o.onItems(items, info);
      },
      onStatus(state, detail) {
        badge.dataset.state = state;
        badge.textContent = LABELS[state] || state;
        badge.title = detail;
        if (state === 'live') error.hidden = true;
        if (o.onStatus) o.onStatus(state, detail);
      },
      onError(e) {
        error.textContent = (e.code ? e.code + ': ' : '') + e.message;
        error.hidden = false;
        if (o.onError) o.onError(e);
      },
    }));
    const tick = setInterval(() => {
      for (const t of list.querySelectorAll('time[data-unix]')) t.textContent = ago(+t.dataset.unix, rtf);
    }, 30000);

    return {
      element: root0, connection: conn,
      close() {
        clearInterval(tick);
        conn.close();
      },
    };
  }

  return {connect, widget, retrieve, text, Error: FeedgateError, version: '1'};
});
