// Third-party streaming clients against a real gateway: npm `eventsource` (a WHATWG EventSource
// for Node) resumes by Last-Event-ID after the gateway restarts or crashes, and npm `ws` changes
// the topics of an open WebSocket. Every item of a topic is checked to arrive exactly once, in
// cursor order, with no cursor skipped.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { buildGateway, freePort, Gateway, sleep } from '../lib/gateway.mjs';

const topic = name => `https://blog.example/clients/${name}.xml`;
// How long to keep listening after the expected items, for duplicates or stray messages.
const SETTLE = 300;

let tmp, gw, pub, reader;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'feedgate-e2e-bin-'));
  const bin = await buildGateway(tmp);
  gw = await new Gateway(bin, { port: await freePort() }).start();
  pub = await gw.addUser('publisher', { rights: 'all' });
  // The reader sees only what it subscribed to.
  reader = await gw.addUser('reader', { rights: 'subscribe,retrieve' });
}, { timeout: 300000 });

after(async () => {
  if (gw) await gw.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const queryAuth = user => Buffer.from(`${user.login}:${user.token}`).toString('base64');
const cursorNum = c => {
  assert.match(c, /^\d{16}$/, `cursor ${JSON.stringify(c)} is not a 16-digit cursor`);
  return Number(c);
};

// Published records, per topic, every entry id fat-pinged, oldest first: the only correct
// sequence of items a client may receive, cursors 1, 2, 3...
class Published {
  constructor() { this.ids = new Map(); this.seq = 0; }

  async send(t, n) {
    const entries = Array.from({ length: n }, () => {
      const id = `urn:clients:${++this.seq}:${Date.now()}`;
      return { id, title: `item ${this.seq}` };
    });
    const before = this.of(t).length;
    const r = await gw.publish(pub, t, entries);
    assert.equal(r.stored, n, `fat ping of ${n} new entries to ${t} stored ${r.stored}`);
    assert.equal(r.cursor, String(before + n).padStart(16, '0'), `fat ping answer's cursor for ${t}`);
    this.of(t).push(...entries.map(e => e.id));
    return entries.map(e => e.id);
  }

  of(t) {
    if (!this.ids.has(t)) this.ids.set(t, []);
    return this.ids.get(t);
  }
}

// Received keeps the notifications a client got and, per topic, its items oldest first.
class Received {
  constructor() { this.notes = []; this.items = new Map(); this.listeners = new Set(); }

  add(note, extra = {}) {
    this.notes.push({ note, ...extra });
    const t = note.status && note.status.feed;
    if (!this.items.has(t)) this.items.set(t, []);
    this.items.get(t).push(...[...note.items].reverse());
    for (const l of this.listeners) l();
  }

  of(t) { return this.items.get(t) || []; }

  // until resolves when cond() holds, checked after every notification.
  until(cond, what, ms = 10000) {
    if (cond()) return Promise.resolve();
    return new Promise((ok, fail) => {
      const l = () => { if (cond()) { done(); ok(); } };
      const timer = setTimeout(() => { done(); fail(new Error(`timed out after ${ms} ms waiting for ${what}; got ${this.describe()}`)); }, ms);
      const done = () => { clearTimeout(timer); this.listeners.delete(l); };
      this.listeners.add(l);
    });
  }

  count(t, n) { return this.until(() => this.of(t).length >= n, `${n} items of ${t}`); }

  describe() {
    return JSON.stringify([...this.items].map(([t, items]) => [t, items.map(i => i.cursor)]));
  }
}

// assertExactly checks that a topic's items arrived exactly once each, in the order they were
// published, with the cursors 1..n.
function assertExactly(got, published, t) {
  const items = got.of(t);
  assert.deepEqual(items.map(i => i.id), published.of(t), `items of ${t}, oldest first (lost, repeated or out of order)`);
  assert.deepEqual(items.map(i => cursorNum(i.cursor)), items.map((_, i) => i + 1), `cursors of ${t} are not 1..${items.length}`);
}

function deferred() {
  let resolve;
  const promise = new Promise(ok => { resolve = ok; });
  return { promise, resolve };
}

// openEventSource connects npm eventsource to the SSE stream of topics, through a fetch that
// records every connection attempt (with the Last-Event-ID it carries) and that the test can
// hold, so that items are published while the client is away.
function openEventSource(topics, { params = {}, got = new Received() } = {}) {
  const u = new URL(gw.url);
  u.searchParams.set('hub.mode', 'retrieve');
  for (const t of topics) u.searchParams.append('hub.topic', t);
  u.searchParams.set('format', 'sse');
  u.searchParams.set('authorization', queryAuth(reader));
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  const conn = { attempts: [], errors: [], hold: null, got };
  conn.es = new EventSource(u, {
    fetch: async (input, init) => {
      conn.attempts.push({ lastEventId: init.headers['Last-Event-ID'] ?? null });
      if (conn.hold) await conn.hold;
      return fetch(input, init);
    },
  });
  conn.es.addEventListener('notification', ev => {
    got.add(JSON.parse(ev.data), { id: ev.lastEventId, attempt: conn.attempts.length });
  });
  conn.es.addEventListener('error', ev => conn.errors.push({ code: ev.code, message: ev.message, state: conn.es.readyState }));
  conn.opened = new Promise((ok, fail) => {
    conn.es.addEventListener('open', ok, { once: true });
    conn.es.addEventListener('error', () => {
      if (conn.es.readyState === EventSource.CLOSED) fail(new Error(`EventSource failed: ${JSON.stringify(conn.errors)}`));
    });
  });
  conn.opened.catch(() => {});
  return conn;
}

async function waitFor(cond, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

describe('EventSource (npm eventsource)', () => {
  test('resumes after a gateway restart (SIGTERM) with exactly the items published meanwhile', { timeout: 30000 }, async t => {
    const T = topic('sse-restart');
    const published = new Published();
    await gw.subscribe(reader, T);
    await published.send(T, 3);

    const c = openEventSource([T]);
    try {
      await c.got.count(T, 3);
      const first = c.got.notes[0];
      assert.equal(first.note.status.feed, T);
      assert.equal(first.id, '0000000000000003', 'the first answer\'s event id is its newest cursor');
      await published.send(T, 2);
      await c.got.count(T, 5);
      assert.equal(c.got.notes.at(-1).id, '0000000000000005', 'the event id follows the newest cursor');

      const away = deferred();
      c.hold = away.promise;
      const errorsBefore = c.errors.length;
      await gw.restart('SIGTERM');
      await waitFor(() => c.errors.length > errorsBefore, 'the EventSource to notice the restart');
      assert.equal(c.errors.at(-1).state, EventSource.CONNECTING, `the EventSource gave up instead of reconnecting: ${JSON.stringify(c.errors)}`);
      // More than one retrieve page (count defaults to 10), in three fat pings.
      for (let i = 0; i < 3; i++) await published.send(T, 4);
      await waitFor(() => c.attempts.length >= 2, 'the EventSource to reconnect');
      const notesBefore = c.got.notes.length;
      c.hold = null;
      away.resolve();

      await c.got.count(T, 17);
      assert.equal(c.attempts[1].lastEventId, '0000000000000005', 'the reconnection carries the id of the last event received');
      const resumed = c.got.notes.slice(notesBefore);
      assert.ok(resumed.every(n => n.note.items.length > 0), 'the resume sends no empty notification');
      assert.equal(c.got.notes.at(-1).id, '0000000000000017');
      await published.send(T, 1);
      await c.got.count(T, 18);
      await sleep(SETTLE);
      assertExactly(c.got, published, T);
      assert.equal(c.attempts.length, 2, `the EventSource connected ${c.attempts.length} times; expected 2`);
      assert.equal(c.es.readyState, EventSource.OPEN);
      t.diagnostic(`${c.got.notes.length} notifications; reconnected with Last-Event-ID ${c.attempts[1].lastEventId}`);
    } finally {
      c.es.close();
    }
  });

  test('a stream of three topics resumes after a crash (SIGKILL) with an opaque token covering all', { timeout: 30000 }, async t => {
    const [A, B, C] = ['sse-multi-a', 'sse-multi-b', 'sse-multi-c'].map(topic);
    const published = new Published();
    for (const x of [A, B, C]) await gw.subscribe(reader, x);
    await published.send(A, 2);
    await published.send(B, 1);

    const c = openEventSource([A, B, C]);
    try {
      await c.got.count(A, 2);
      await c.got.count(B, 1);
      await c.got.until(() => c.got.notes.some(n => n.note.status.feed === C), `the first answer of ${C}`);
      assert.deepEqual(c.got.notes.map(n => n.note.status.feed).sort(), [A, B, C].sort(), 'one first answer per topic');
      for (const n of c.got.notes) assert.match(n.id, /^m[A-Za-z0-9_-]+$/, 'a several-topic stream\'s event id is an opaque token');

      await published.send(A, 1);
      await published.send(C, 1);
      await c.got.count(A, 3);
      await c.got.count(C, 1);

      const away = deferred();
      c.hold = away.promise;
      // Acknowledged just before the crash: stored, so it must arrive exactly once, whether it
      // was sent before the crash or on the resume.
      await published.send(B, 1);
      await gw.restart('SIGKILL');
      await waitFor(() => c.errors.length > 0, 'the EventSource to notice the crash');
      await published.send(A, 3);
      await published.send(B, 5);
      await published.send(B, 6); // B now holds more than one page since the token's cursor
      await waitFor(() => c.attempts.length >= 2, 'the EventSource to reconnect');
      const token = c.attempts[1].lastEventId;
      assert.match(token ?? '', /^m/, 'the reconnection carries the opaque several-topic token');
      assert.equal(token, c.got.notes.at(-1).id, 'the token is the id of the last event received');
      const notesBefore = c.got.notes.length;
      c.hold = null;
      away.resolve();

      await c.got.count(A, 6);
      await c.got.count(B, 13);
      const resumed = c.got.notes.slice(notesBefore);
      assert.ok(resumed.every(n => n.note.items.length > 0), `the resume sends notifications without items: ${JSON.stringify(resumed.map(n => n.note.status.feed + ':' + n.note.items.length))}`);
      assert.ok(!resumed.some(n => n.note.status.feed === C), `${C} got nothing new, so the resume sends nothing for it`);
      await published.send(C, 1);
      await published.send(B, 1);
      await c.got.count(C, 2);
      await c.got.count(B, 14);
      await sleep(SETTLE);
      for (const x of [A, B, C]) assertExactly(c.got, published, x);
      assert.equal(c.attempts.length, 2, `the EventSource connected ${c.attempts.length} times; expected 2`);
      t.diagnostic(`resume token ${token}`);
    } finally {
      c.es.close();
    }
  });

  test('lastEventId in the URL resumes a new EventSource, and Last-Event-ID takes over on reconnection; a token that is not one fails it with 422', { timeout: 20000 }, async () => {
    const T = topic('sse-url-resume');
    const published = new Published();
    await gw.subscribe(reader, T);
    await published.send(T, 4);

    const c = openEventSource([T], { params: { lastEventId: '0000000000000002' } });
    try {
      await c.got.count(T, 2);
      assert.deepEqual(c.got.of(T).map(i => i.id), published.of(T).slice(2), 'only the items after the cursor');
      await published.send(T, 1);
      await c.got.count(T, 3);
      // On reconnection the header (the newest event) must win over the URL's older lastEventId.
      await gw.restart('SIGTERM');
      await published.send(T, 1);
      await c.got.count(T, 4);
      await sleep(SETTLE);
      assert.deepEqual(c.got.of(T).map(i => cursorNum(i.cursor)), [3, 4, 5, 6]);
      assert.equal(c.attempts[0].lastEventId, null);
      assert.ok(c.attempts.length >= 2, 'the EventSource reconnected');
      for (const a of c.attempts.slice(1)) assert.equal(a.lastEventId, '0000000000000005', 'reconnections carry the newest event id');
    } finally {
      c.es.close();
    }

    const bad = openEventSource([T], { params: { lastEventId: 'not-a-token' } });
    try {
      await assert.rejects(bad.opened, /EventSource failed/);
      assert.equal(bad.es.readyState, EventSource.CLOSED, 'the EventSource must not retry a request the gateway refuses');
      assert.equal(bad.errors.at(-1).code, 422, `error events: ${JSON.stringify(bad.errors)}`);
      assert.equal(bad.got.notes.length, 0);
    } finally {
      bad.es.close();
    }
  });
});

// openSocket connects npm ws to path (/ws, or the hub endpoint with hub.mode=retrieve) for topic
// and collects its messages.
function openSocket(t, params = {}, path = 'ws') {
  const u = new URL(gw.url.replace(/^http/, 'ws') + path);
  u.searchParams.set('hub.topic', t);
  u.searchParams.set('authorization', queryAuth(reader));
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  const s = { got: new Received(), errors: [], messages: [], closed: null };
  s.ws = new WebSocket(u);
  s.ws.on('message', (data, binary) => {
    assert.equal(binary, false, 'the gateway sends text messages');
    const msg = JSON.parse(data.toString('utf8'));
    s.messages.push(msg);
    if (msg.error) {
      s.errors.push(msg.error);
      for (const l of s.got.listeners) l();
    } else {
      s.got.add(msg);
    }
  });
  s.ended = new Promise(ok => s.ws.on('close', (code, reason) => { s.closed = { code, reason: String(reason) }; ok(s.closed); }));
  s.open = new Promise((ok, fail) => { s.ws.once('open', ok); s.ws.once('error', fail); });
  s.send = obj => s.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  // error waits for the nth error message (1-based).
  s.error = n => s.got.until(() => s.errors.length >= n, `error message ${n}`).then(() => s.errors[n - 1]);
  return s;
}

function assertError(e, code, what) {
  assert.equal(typeof e, 'object', `${what}: no {"error":{...}} message`);
  assert.equal(e.code, code, `${what}: ${JSON.stringify(e)}`);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 10, `${what}: the message must say what is wrong: ${JSON.stringify(e)}`);
}

describe('WebSocket (npm ws)', () => {
  test('subscribes to a second topic on an open socket, unsubscribes from the first, answers bad messages with errors', { timeout: 20000 }, async t => {
    const [A, B, C, D] = ['ws-a', 'ws-b', 'ws-c', 'ws-unsubscribed'].map(topic);
    const published = new Published();
    for (const x of [A, B, C]) await gw.subscribe(reader, x);
    await gw.subscribe(pub, D); // a topic the reader did not subscribe to
    await published.send(A, 2);
    await published.send(B, 1);
    await published.send(C, 3);

    const s = openSocket(A);
    try {
      await s.open;
      await s.got.count(A, 2);
      const first = s.messages[0];
      assert.equal(first.status.feed, A, 'the first message is the retrieve answer of the URL\'s topic');
      assert.equal(first.status.cursor, '0000000000000002');
      assert.equal(first.items.length, 2);

      await published.send(A, 1);
      await s.got.count(A, 3);

      s.send({ mode: 'subscribe', topic: B });
      await s.got.count(B, 1);
      assert.equal(s.messages.at(-1).status.feed, B, 'the retrieve answer of the new topic');
      await published.send(B, 2);
      await s.got.count(B, 3);
      assert.equal(s.messages.at(-1).status.feed, B);
      assert.equal(s.messages.at(-1).items.length, 2, 'one notification holds the two items of the fat ping');

      // after= on subscribe: only what follows the cursor.
      s.send({ mode: 'subscribe', topic: C, after: '0000000000000001' });
      await s.got.count(C, 2);
      assert.deepEqual(s.got.of(C).map(i => i.id), published.of(C).slice(1));

      s.send({ mode: 'unsubscribe', topic: A });
      // Unsubscribing answers nothing; a second one is refused, which also tells the first was applied.
      s.send({ mode: 'unsubscribe', topic: A });
      assertError(await s.error(1), 404, 'unsubscribing from a topic not on the socket');
      const messagesBefore = s.messages.length;
      await published.send(A, 1);
      await published.send(B, 1);
      await s.got.count(B, 4);
      await sleep(SETTLE);
      const strays = s.messages.slice(messagesBefore).filter(m => m.status && m.status.feed === A);
      assert.deepEqual(strays, [], `items of ${A} arrived after unsubscribing from it`);

      // Back on A from the last cursor seen: the item published meanwhile, once.
      s.send({ mode: 'subscribe', topic: A, after: s.got.of(A).at(-1).cursor });
      await s.got.count(A, 4);

      s.send('this is not JSON');
      assertError(await s.error(2), 422, 'a message that is not JSON');
      s.send({ mode: 'publish', topic: A });
      assertError(await s.error(3), 422, 'an unknown mode');
      s.send({ mode: 'subscribe' });
      assertError(await s.error(4), 422, 'subscribe without a topic');
      s.send({ mode: 'subscribe', topic: 'ftp://blog.example/feed' });
      assertError(await s.error(5), 422, 'subscribe to a topic that is not an http(s) URL');
      s.send({ mode: 'subscribe', topic: D });
      assertError(await s.error(6), 404, 'subscribe to a topic the user has no subscription to');
      s.send({ mode: 'subscribe', topic: B });
      assertError(await s.error(7), 409, 'subscribe twice to the same topic');

      // The errors did not end the socket, and every topic still flows exactly once.
      await published.send(A, 1);
      await published.send(B, 1);
      await published.send(C, 1);
      await s.got.count(A, 5);
      await s.got.count(B, 5);
      await s.got.count(C, 3);
      await sleep(SETTLE);
      assert.equal(s.closed, null, `the socket closed: ${JSON.stringify(s.closed)}`);
      assert.equal(s.errors.length, 7, `unexpected error messages: ${JSON.stringify(s.errors.slice(7))}`);
      assertExactly(s.got, published, A);
      assertExactly(s.got, published, B);
      // C was joined after its first item.
      assert.deepEqual(s.got.of(C).map(i => i.id), published.of(C).slice(1));
      assert.deepEqual(s.got.of(C).map(i => cursorNum(i.cursor)), [2, 3, 4]);
      assert.ok(!s.got.items.has(D), `items of ${D} arrived`);
      t.diagnostic(`${s.messages.length} messages`);
    } finally {
      s.ws.close();
      await s.ended;
    }
  });

  test('SIGTERM closes the socket with 1012; a new socket on the retrieve URL resumes with after=', { timeout: 20000 }, async () => {
    const T = topic('ws-restart');
    const published = new Published();
    await gw.subscribe(reader, T);
    await published.send(T, 2);
    const s = openSocket(T);
    await s.open;
    await s.got.count(T, 2);
    const stopped = gw.stop('SIGTERM');
    const closed = await s.ended;
    await stopped;
    assert.equal(closed.code, 1012, `close frame ${JSON.stringify(closed)}`);
    await gw.start();
    await published.send(T, 3);

    const r = openSocket(T, { 'hub.mode': 'retrieve', after: s.got.of(T).at(-1).cursor }, '');
    try {
      await r.open;
      await r.got.count(T, 3);
      await published.send(T, 1);
      await r.got.count(T, 4);
      await sleep(SETTLE);
      const seen = [...s.got.of(T), ...r.got.of(T)].map(i => i.id);
      assert.deepEqual(seen, published.of(T), 'before the restart, then after it from the cursor, each once');
      assert.deepEqual(r.errors, []);
    } finally {
      r.ws.close();
      await r.ended;
    }
  });
});
