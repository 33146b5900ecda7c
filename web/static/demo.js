// The demo console: connects Feedgate.widget to what the form says.
(function () {
  'use strict';
  const $ = id => document.getElementById(id);
  const form = $('connect');
  const fields = ['hub', 'topic', 'login', 'count'];
  let widget = null;

  // Defaults: this gateway, and what the URL fragment or the last visit said (never the token).
  $('hub').value = location.origin + '/';
  try {
    const saved = JSON.parse(sessionStorage.getItem('feedgate-demo') || '{}');
    for (const f of fields) if (saved[f]) $(f).value = saved[f];
  } catch (e) { /* storage unavailable */ }
  const hash = new URLSearchParams(location.hash.slice(1));
  for (const f of fields.concat('token')) if (hash.get(f)) $(f).value = hash.get(f);

  function topics() {
    return $('topic').value.split(/\s+/).filter(Boolean);
  }

  function curl() {
    const t = topics()[0] || 'https://blog.example/feed.xml';
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const hub = $('hub').value || location.origin + '/';
    $('curl').textContent =
      "curl -u \"$LOGIN:$TOKEN\" -H 'Content-Type: application/atom+xml' \\\n" +
      "  '" + hub + '?hub.mode=publish&hub.topic=' + encodeURIComponent(t) + "' --data-binary @- <<'EOF'\n" +
      '<feed xmlns="http://www.w3.org/2005/Atom"><title>Example</title><id>urn:example</id><updated>' + now + '</updated>\n' +
      '<entry><id>urn:example:' + Date.now() + '</id><title>Hello at ' + now + '</title><updated>' + now + '</updated>\n' +
      '<link href="https://blog.example/hello"/><summary>Pushed by a fat ping.</summary></entry></feed>\nEOF';
  }

  function disconnect() {
    if (widget) widget.close();
    widget = null;
    $('stop').disabled = true;
    $('start').textContent = 'Connect';
  }

  form.addEventListener('submit', e => {
    e.preventDefault();
    disconnect();
    const opts = {hub: $('hub').value, topics: topics(), login: $('login').value.trim(), token: $('token').value.trim(),
      count: Math.min(50, Math.max(1, parseInt($('count').value, 10) || 10)), max: 50};
    try {
      sessionStorage.setItem('feedgate-demo', JSON.stringify({hub: opts.hub, topic: $('topic').value, login: opts.login, count: String(opts.count)}));
    } catch (err) { /* storage unavailable */ }
    widget = Feedgate.widget($('feed'), Object.assign(opts, {
      label: 'Items of ' + opts.topics.join(', '),
      onStatus(state, detail) {
        $('transport').textContent = state === 'live' ? 'connected by ' + ({sse: 'Server-Sent Events', ws: 'WebSocket', poll: 'long-polling'}[detail] || detail) : '';
      },
    }));
    window.feedgateDemo = widget; // for the console and the browser tests
    $('stop').disabled = false;
    $('start').textContent = 'Reconnect';
  });
  $('stop').addEventListener('click', disconnect);
  $('topic').addEventListener('input', curl);
  $('hub').addEventListener('input', curl);
  curl();
})();
