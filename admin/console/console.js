// feedgate's admin console: one page on the admin listener, no build step, no dependencies.
// The admin credential is kept in this tab's sessionStorage and sent in the Authorization
// header (never in a URL). The views follow GET /admin/api/events, a Server-Sent Events
// stream read with fetch (EventSource cannot send the header); actions call the admin API.
'use strict';
(() => {
  const API = 'api/';
  const KEY = 'feedgate-admin';
  const VIEWS = ['users', 'topics', 'deliveries', 'connections', 'nodes'];
  const $ = id => document.getElementById(id);

  let cred = sessionStorage.getItem(KEY);
  let follower = null; // AbortController of the events stream
  let skew = 0; // server clock minus ours, ms
  let current = null; // the last overview

  // --- the admin API -------------------------------------------------------------------------

  function basic(login, token) {
    const bytes = new TextEncoder().encode(`${login}:${token}`);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return 'Basic ' + btoa(bin);
  }

  function headers(extra = {}) {
    // X-Feedgate-Console: answer 401 without a Basic challenge, so the browser never
    // prompts (nor keeps) credentials of its own for this origin.
    return { Authorization: cred, 'X-Feedgate-Console': '1', Accept: 'application/json', ...extra };
  }

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function call(method, path, body) {
    const opts = { method, headers: headers(), credentials: 'omit', cache: 'no-store' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(API + path, opts);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (!r.ok) throw new APIError(r.status, data?.error?.message || `${r.status} ${r.statusText}`);
    return data;
  }

  // --- signing in and out ----------------------------------------------------------------------

  function showApp(on) {
    $('signin').hidden = on;
    $('views').hidden = !on;
    $('signout').hidden = !on;
    if (!on) for (const v of VIEWS) $(v).hidden = true;
  }

  async function signIn(ev) {
    ev.preventDefault();
    const login = $('signin-login').value.trim();
    const token = $('signin-token').value.trim();
    const err = $('signin-error');
    err.textContent = '';
    if (!login || !token) {
      err.textContent = 'Enter the login and the token of a user with the admin right.';
      (login ? $('signin-token') : $('signin-login')).focus();
      return;
    }
    cred = basic(login, token);
    try {
      await call('GET', 'users');
    } catch (e) {
      cred = null;
      err.textContent = e.status === 401 ? 'The login or the token is not accepted.' :
        e.status === 403 ? 'This token does not have the admin right.' : `Signing in failed: ${e.message}`;
      $('signin-token').focus();
      return;
    }
    sessionStorage.setItem(KEY, cred);
    $('signin-token').value = '';
    start();
  }

  function signOut(message) {
    if (follower) follower.abort();
    follower = null;
    cred = null;
    current = null;
    sessionStorage.removeItem(KEY);
    showApp(false);
    setLive('off', 'Signed out');
    $('node').textContent = '';
    $('banner').hidden = true;
    $('signin-error').textContent = message || '';
    $('signin-login').focus();
  }

  function start() {
    showApp(true);
    route(true);
    follow();
  }

  // --- the live stream ---------------------------------------------------------------------------

  function setLive(state, text) {
    const el = $('live');
    el.dataset.state = state;
    if (el.textContent !== text) el.textContent = text;
  }

  const sleep = (ms, signal) => new Promise(ok => {
    const t = setTimeout(ok, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); ok(); }, { once: true });
  });

  // parseEvent reads one SSE event block (the lines between blank lines).
  function parseEvent(block) {
    const ev = { event: 'message', data: [] };
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') ev.event = value;
      else if (field === 'data') ev.data.push(value);
    }
    ev.data = ev.data.join('\n');
    return ev;
  }

  async function follow() {
    if (follower) follower.abort();
    const ctl = follower = new AbortController();
    let delay = 1000;
    while (!ctl.signal.aborted) {
      setLive('wait', 'Connecting…');
      try {
        const r = await fetch(API + 'events', {
          headers: headers({ Accept: 'text/event-stream' }), signal: ctl.signal, cache: 'no-store', credentials: 'omit',
        });
        if (r.status === 401 || r.status === 403) {
          signOut('Your admin token is no longer accepted: sign in again.');
          return;
        }
        if (!r.ok || !r.body) throw new Error(`${r.status}`);
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf = (buf + value).replace(/\r\n?/g, '\n');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const ev = parseEvent(buf.slice(0, i));
            buf = buf.slice(i + 2);
            if (ev.event === 'overview') {
              delay = 1000;
              render(JSON.parse(ev.data));
            } else if (ev.event === 'end') {
              let why = '';
              try { why = JSON.parse(ev.data).error; } catch { /* none */ }
              signOut(`Signed out: ${why || 'the admin token is no longer valid'}.`);
              return;
            }
          }
        }
      } catch {
        if (ctl.signal.aborted) return;
      }
      setLive('wait', 'Reconnecting…');
      await sleep(delay, ctl.signal);
      delay = Math.min(delay * 2, 10000);
    }
  }

  // --- formatting ------------------------------------------------------------------------------------

  const now = () => Date.now() + skew;
  const timeOf = v => {
    if (!v) return 0;
    if (typeof v === 'number') return v * 1000; // Unix seconds
    const t = Date.parse(v);
    return Number.isNaN(t) || t <= 0 ? 0 : t;
  };

  function rel(ms) {
    if (!ms) return '';
    const d = ms - now();
    const a = Math.abs(d);
    if (a < 1500) return d < 0 ? 'just now' : 'now';
    let s;
    if (a < 60e3) s = `${Math.round(a / 1e3)} s`;
    else if (a < 3600e3) s = `${Math.round(a / 60e3)} min`;
    else if (a < 48 * 3600e3) s = `${Math.round(a / 3600e3)} h`;
    else s = `${Math.round(a / 86400e3)} d`;
    return d < 0 ? `${s} ago` : `in ${s}`;
  }

  const iso = ms => (ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : '');

  // --- keyed table rows: updated in place, so focus and selection survive every update ----------

  // rowHeader appends the cell that names the row.
  function rowHeader(tr, { text = '', field = '', url = false } = {}) {
    const th = document.createElement('th');
    th.scope = 'row';
    if (field) th.dataset.field = field;
    if (url) th.className = 'url';
    th.textContent = text;
    tr.append(th);
  }

  function cell(tr, field, { num = false } = {}) {
    const td = document.createElement('td');
    td.dataset.field = field;
    if (num) td.className = 'num';
    tr.append(td);
    return td;
  }

  // set writes a cell's text (and an optional second line, class and title) when it changed;
  // a number that changed flashes.
  function set(tr, field, text, { sub = '', cls = '', title = '', subCls = '' } = {}) {
    const td = tr.querySelector(`td[data-field="${field}"]`);
    const main = String(text ?? '');
    const sig = `${main}\u0000${sub}\u0000${cls}\u0000${title}\u0000${subCls}`;
    if (td.dataset.sig === sig) return;
    const was = td.dataset.sig;
    td.dataset.sig = sig;
    const span = document.createElement('span');
    span.textContent = main;
    if (cls) span.className = cls;
    const parts = [span];
    if (sub) {
      const s = document.createElement('span');
      s.className = subCls ? `sub ${subCls}` : 'sub';
      s.textContent = sub;
      parts.push(s);
    }
    td.replaceChildren(...parts);
    if (title) td.title = title; else td.removeAttribute('title');
    if (td.classList.contains('num') && was !== undefined) {
      td.classList.remove('changed');
      void td.offsetWidth; // restart the animation
      td.classList.add('changed');
    }
  }

  function syncRows(tbody, items, key, build, update, empty) {
    const have = new Map();
    for (const tr of [...tbody.rows]) {
      if (tr.dataset.key === undefined) tr.remove();
      else have.set(tr.dataset.key, tr);
    }
    const keep = new Set();
    items.forEach((it, idx) => {
      const k = key(it);
      keep.add(k);
      let tr = have.get(k);
      if (!tr) {
        tr = document.createElement('tr');
        tr.dataset.key = k;
        build(tr, it);
      }
      update(tr, it);
      if (tbody.rows[idx] !== tr) tbody.insertBefore(tr, tbody.rows[idx] || null);
    });
    for (const [k, tr] of have) if (!keep.has(k)) tr.remove();
    if (!items.length) {
      const tr = document.createElement('tr');
      const td = document.createElement('td');
      td.colSpan = tbody.closest('table').tHead.rows[0].cells.length;
      td.className = 'empty';
      td.textContent = empty;
      tr.append(td);
      tbody.append(tr);
    }
  }

  function button(tr, field, label, onClick, cls = '') {
    let td = tr.querySelector(`td[data-field="${field}"]`);
    if (!td) td = cell(tr, field);
    td.classList.add('row-actions');
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    if (cls) b.className = cls;
    b.addEventListener('click', () => onClick(b));
    td.append(b);
    return b;
  }

  // --- rendering an overview ---------------------------------------------------------------------

  function render(o) {
    current = o;
    skew = Date.parse(o.time) - Date.now() || 0;
    const banner = $('banner');
    banner.hidden = !o.error;
    banner.textContent = o.error || '';
    setLive('live', `Live · updated ${new Date(now()).toLocaleTimeString()}`);
    if (o.error) return;
    $('node').textContent = `node ${o.node}`;
    renderUsers(o.users || []);
    renderTopics(o);
    renderDeliveries(o);
    renderConnections(o.nodes || []);
    renderNodes(o.nodes || []);
  }

  function renderUsers(users) {
    syncRows($('users-rows'), users, u => u.login, (tr, u) => {
      rowHeader(tr, { text: u.login });
      cell(tr, 'rights');
      cell(tr, 'topics');
      cell(tr, 'tokens', { num: true });
      cell(tr, 'expires');
      button(tr, 'actions', 'Rotate token', b => rotate(u.login, b)).setAttribute('aria-label', `Rotate the token of ${u.login}`);
      button(tr, 'actions', 'Remove', b => removeUser(u.login, b), 'danger').setAttribute('aria-label', `Remove ${u.login}`);
    }, (tr, u) => {
      set(tr, 'rights', (u.rights || []).join(', '));
      set(tr, 'topics', u.topics?.length ? u.topics.join(', ') : 'every topic', { cls: u.topics?.length ? '' : 'muted' });
      set(tr, 'tokens', u.tokens);
      const exp = timeOf(u.expires);
      set(tr, 'expires', exp ? rel(exp) : 'never', { title: iso(exp), cls: exp && exp < now() ? 'bad' : '' });
    }, 'No users.');
  }

  function renderTopics(o) {
    const topics = o.topics || [];
    $('topics-total').textContent = o.topicsTotal > topics.length ?
      `${o.topicsTotal} tracked topics; the first ${topics.length} are shown.` : `${o.topicsTotal || 0} tracked topics.`;
    syncRows($('topics-rows'), topics, t => t.topic, (tr, t) => {
      rowHeader(tr, { field: 'topic', url: true });
      for (const f of ['status', 'lastFetch', 'nextFetch', 'hub']) cell(tr, f);
      for (const f of ['subscribers', 'connections', 'items']) cell(tr, f, { num: true });
    }, (tr, t) => {
      const th = tr.querySelector('th');
      const title = t.title || '';
      if (th.dataset.sig !== title) {
        th.dataset.sig = title;
        const name = document.createElement('span');
        name.textContent = title || t.topic;
        const url = document.createElement('span');
        url.className = 'sub';
        url.textContent = title ? t.topic : '';
        th.replaceChildren(name, url);
      }
      const s = t.status || {};
      const failing = t.failures > 0 || !!t.fetchError;
      set(tr, 'status', s.code ? String(s.code) : (s.lastFetch ? 'failed' : 'not fetched yet'),
        { cls: failing ? 'bad' : s.code ? 'ok' : 'muted', sub: t.failures ? `${t.failures} failure${t.failures > 1 ? 's' : ''} in a row` : '' });
      const last = timeOf(s.lastFetch);
      set(tr, 'lastFetch', last ? rel(last) : 'never', { title: iso(last), sub: t.fetchError || s.http || '', subCls: failing ? 'bad' : '' });
      const next = timeOf(s.nextFetch);
      set(tr, 'nextFetch', next ? rel(next) : '', { title: iso(next), sub: t.periodSeconds ? `every ${t.periodSeconds < 120 ? `${t.periodSeconds} s` : `${Math.round(t.periodSeconds / 60)} min`}` : '' });
      const ups = t.upstreams || [];
      const hub = ups.length ? ups.map(u => {
        const exp = timeOf(u.expiresAt);
        return `${u.state}${exp ? ` until ${iso(exp)}` : ''}`;
      }).join('; ') : (t.hubs?.length ? 'hub advertised, no lease' : 'no hub: polled');
      set(tr, 'hub', hub, { sub: ups.length ? ups.map(u => u.hub).join(', ') : (t.hubs || []).join(', ') });
      set(tr, 'subscribers', t.subscribers, { sub: t.callbacks ? `${t.callbacks} webhook${t.callbacks > 1 ? 's' : ''}` : '' });
      set(tr, 'connections', t.connections);
      set(tr, 'items', t.items);
    }, 'No tracked topics.');
  }

  function deliveryKey(d) { return `${d.login}\u0000${d.topic}\u0000${d.callback}`; }

  function renderDeliveries(o) {
    const ds = o.deliveries || [];
    const q = o.deliveryQueue || {};
    const stats = { deliveries: q.deliveries ?? ds.length, due: q.due ?? 0, leased: q.leased ?? 0, failing: ds.filter(d => d.failing).length };
    for (const dd of $('queue').querySelectorAll('dd')) {
      const v = String(stats[dd.dataset.stat]);
      if (dd.textContent !== v) dd.textContent = v;
    }
    syncRows($('deliveries-rows'), ds, deliveryKey, (tr, d) => {
      rowHeader(tr, { text: d.topic, url: true });
      cell(tr, 'callback').className = 'url';
      cell(tr, 'health');
      for (const f of ['queued', 'attempts']) cell(tr, f, { num: true });
      for (const f of ['lastError', 'lastSuccess', 'next']) cell(tr, f);
      button(tr, 'actions', 'Retry now', b => retry(d, b)).setAttribute('aria-label', `Retry now: delivery of ${d.topic} to ${d.callback}`);
    }, (tr, d) => {
      const p = d.progress || {};
      set(tr, 'callback', d.callback, { sub: `for ${d.login}${d.format ? `, ${d.format}` : ''}` });
      const since = timeOf(p.failingSince);
      set(tr, 'health', d.inProgress ? 'delivering' : d.failing ? 'failing' : 'healthy',
        { cls: d.failing ? 'bad' : 'ok', sub: d.failing && since ? `since ${new Date(since).toLocaleTimeString()}` : '', title: iso(since) });
      set(tr, 'queued', d.queued);
      set(tr, 'attempts', p.attempts || 0, { sub: p.failed ? `${p.failed} in all` : '' });
      set(tr, 'lastError', p.lastError || '', { cls: 'bad', sub: p.lastErrorAt ? rel(timeOf(p.lastErrorAt)) : '' });
      const ok = timeOf(p.lastSuccess);
      set(tr, 'lastSuccess', ok ? rel(ok) : 'never', { title: iso(ok), sub: p.succeeded ? `${p.succeeded} POSTs, ${p.items || 0} items` : '' });
      const next = timeOf(d.nextAttempt);
      set(tr, 'next', d.inProgress ? 'under way' : next ? (d.failing ? `retry ${rel(next)}` : rel(next)) : 'when items arrive',
        { title: iso(next), cls: d.failing ? 'warn' : '' });
    }, 'No webhook subscriptions.');
  }

  function renderConnections(nodes) {
    const rows = [];
    const byKind = {};
    let total = 0;
    for (const n of nodes) {
      for (const c of n.byUser || []) rows.push({ node: n.id, ...c });
      for (const [k, v] of Object.entries(n.byKind || {})) byKind[k] = (byKind[k] || 0) + v;
      total += n.connections || 0;
    }
    const forms = Object.entries(byKind).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ');
    $('connections-total').textContent = `${total} live connection${total === 1 ? '' : 's'} on ${nodes.length} node${nodes.length === 1 ? '' : 's'}${forms ? ` (${forms})` : ''}.`;
    syncRows($('connections-rows'), rows, r => `${r.node}\u0000${r.login}\u0000${r.kind}`, (tr, r) => {
      rowHeader(tr, { text: r.node });
      cell(tr, 'login');
      cell(tr, 'kind');
      cell(tr, 'count', { num: true });
    }, (tr, r) => {
      set(tr, 'login', r.login);
      set(tr, 'kind', r.kind);
      set(tr, 'count', r.count);
    }, 'No live connections.');
  }

  function renderNodes(nodes) {
    syncRows($('nodes-rows'), nodes, n => n.id, (tr, n) => {
      rowHeader(tr, { field: 'id' });
      for (const f of ['role', 'version', 'store', 'addresses', 'started', 'seen']) cell(tr, f);
      cell(tr, 'connections', { num: true });
      cell(tr, 'byKind');
      cell(tr, 'liveTopics', { num: true });
    }, (tr, n) => {
      const th = tr.querySelector('th');
      const label = n.self ? `${n.id} (this node)` : n.id;
      if (th.textContent !== label) th.textContent = label;
      set(tr, 'role', n.role);
      set(tr, 'version', n.version);
      set(tr, 'store', n.store);
      set(tr, 'addresses', n.publicUrl || '', { sub: [n.listen && `listens on ${n.listen}`, n.adminUrl && `admin ${n.adminUrl}`].filter(Boolean).join(' · ') });
      const st = timeOf(n.started);
      set(tr, 'started', rel(st), { title: iso(st) });
      const seen = timeOf(n.seen);
      set(tr, 'seen', n.self ? 'now' : rel(seen), { title: iso(seen) });
      set(tr, 'connections', n.connections || 0);
      set(tr, 'byKind', Object.entries(n.byKind || {}).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ') || '—');
      set(tr, 'liveTopics', n.liveTopics || 0);
    }, 'No nodes.');
  }

  // --- actions -------------------------------------------------------------------------------------

  // ask shows the confirmation dialog and resolves to null (cancelled) or the expiry typed.
  // A dialog's close event is queued, so a key press may open the next question before the
  // close event of the last one arrives: each question is answered once, by its own close event
  // or, when that is late, by the next ask; a close event that finds the dialog open is late.
  let answer = null;
  function settle() {
    const dlg = $('confirm');
    if (!answer || dlg.open) return;
    const done = answer;
    answer = null;
    done(dlg.returnValue === 'ok' ? $('confirm-expires').value.trim() : null);
  }

  function ask({ title, text, ok, expires = false }) {
    settle();
    const dlg = $('confirm');
    $('confirm-h').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = ok;
    $('confirm-expires-row').hidden = !expires;
    $('confirm-expires').value = '';
    dlg.returnValue = '';
    return new Promise(done => {
      answer = done;
      dlg.showModal();
      (expires ? $('confirm-expires') : $('confirm-ok')).focus();
    });
  }

  let tokenReturn = null;
  function showToken(what, token, back) {
    $('token-what').textContent = what;
    $('token-value').textContent = token;
    const box = $('token-box');
    box.hidden = false;
    tokenReturn = back;
    box.focus();
  }

  function hideToken() {
    $('token-box').hidden = true;
    $('token-value').textContent = '';
    const back = tokenReturn && tokenReturn.isConnected ? tokenReturn : $('users-h');
    tokenReturn = null;
    back.focus();
  }

  async function copyToken() {
    const text = $('token-value').textContent;
    try {
      await navigator.clipboard.writeText(text);
      $('token-copy').textContent = 'Copied';
    } catch {
      const range = document.createRange();
      range.selectNodeContents($('token-value'));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      $('token-copy').textContent = 'Selected: press Ctrl+C';
    }
    setTimeout(() => { $('token-copy').textContent = 'Copy'; }, 2000);
  }

  function report(e) {
    if (e.status === 401) signOut('Your admin token is no longer accepted: sign in again.');
    return e.message;
  }

  async function addUser(ev) {
    ev.preventDefault();
    const form = ev.target;
    const err = $('add-error');
    err.textContent = '';
    const login = form.login.value.trim();
    const rights = [...form.querySelectorAll('input[name=rights]:checked')].map(c => c.value);
    const topics = form.topics.value.split(',').map(s => s.trim()).filter(Boolean);
    const expires = form.expires.value.trim();
    if (!login) {
      err.textContent = 'Enter a login.';
      form.login.focus();
      return;
    }
    if (!rights.length) {
      err.textContent = 'Choose at least one right.';
      form.querySelector('input[name=rights]').focus();
      return;
    }
    const submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    try {
      const body = { login, rights };
      if (topics.length) body.topics = topics;
      if (expires) body.expires = expires;
      const a = await call('POST', 'users', body);
      form.reset();
      showToken(`Token of the new user ${a.login}${a.expires ? `, valid until ${iso(timeOf(a.expires))}` : ''}:`, a.token, form.login);
    } catch (e) {
      err.textContent = report(e);
      form.login.focus();
    } finally {
      submit.disabled = false;
    }
  }

  async function rotate(login, b) {
    const expires = await ask({
      title: `Rotate the token of ${login}?`,
      text: 'A new token replaces the current ones: they stop working within 5 s on every node, and connections opened with them end.',
      ok: 'Rotate', expires: true,
    });
    if (expires === null) { b.focus(); return; }
    try {
      const a = await call('POST', `users/${encodeURIComponent(login)}/rotate`, expires ? { expires } : {});
      showToken(`New token of ${a.login}${a.expires ? `, valid until ${iso(timeOf(a.expires))}` : ''}:`, a.token, b);
    } catch (e) {
      $('add-error').textContent = `Rotating the token of ${login} failed: ${report(e)}`;
      b.focus();
    }
  }

  async function removeUser(login, b) {
    const ok = await ask({
      title: `Remove ${login}?`,
      text: 'The user, its tokens and its subscriptions are removed; its live connections end within 5 s on every node.',
      ok: 'Remove',
    });
    if (ok === null) { b.focus(); return; }
    try {
      await call('DELETE', `users/${encodeURIComponent(login)}`);
      const tr = b.closest('tr');
      const next = tr.nextElementSibling || tr.previousElementSibling;
      tr.remove();
      (next?.querySelector('button') || $('users-h')).focus();
    } catch (e) {
      $('add-error').textContent = `Removing ${login} failed: ${report(e)}`;
      b.focus();
    }
  }

  async function retry(d, b) {
    b.disabled = true;
    const row = b.closest('tr');
    try {
      const info = await call('POST', 'deliveries/retry', { login: d.login, topic: d.topic, callback: d.callback });
      set(row, 'next', 'now', { title: iso(timeOf(info.nextAttempt)) });
      setLive('live', `Retry of ${d.callback} requested`);
    } catch (e) {
      set(row, 'next', `retry failed: ${report(e)}`, { cls: 'bad' });
    } finally {
      b.disabled = false;
      if (b.isConnected) b.focus();
    }
  }

  // --- views ------------------------------------------------------------------------------------------

  function route(initial) {
    if (!cred) return;
    const want = location.hash.slice(1);
    const view = VIEWS.includes(want) ? want : 'users';
    for (const v of VIEWS) $(v).hidden = v !== view;
    for (const a of $('views').querySelectorAll('a')) {
      if (a.getAttribute('href') === `#${view}`) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (!initial) $(`${view}-h`).focus();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', () => signOut('Signed out.'));
    $('add-form').addEventListener('submit', addUser);
    $('token-copy').addEventListener('click', copyToken);
    $('token-hide').addEventListener('click', hideToken);
    $('confirm').addEventListener('close', settle);
    window.addEventListener('hashchange', () => route(false));
    if (cred) start();
    else signOut('');
  });
})();
