// Browser tests of feedgate's web side: a real gateway (built from this repository), Debian's
// Chromium driven by playwright-core, the demo page served by the gateway, and pages of other
// origins that embed the widget and the jQuery plugin with the README's snippet.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { minify } from 'terser';
import { buildGateway, freePort, Gateway, repoRoot, sleep } from '../lib/gateway.mjs';
import { startSite } from '../lib/site.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
  '--no-first-run', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = resolve(import.meta.dirname, '../test-artifacts');
const DOCS_SHOT = resolve(repoRoot, 'docs/demo.png');
// How soon a fat-pinged item must show in the page.
const LIVE_BUDGET = 1000;

const topic = name => `https://blog.example/e2e/${name}.xml`;
let seq = 0;
const entry = (title, extra = {}) => ({ id: `urn:e2e:${++seq}:${Date.now()}`, title, summary: `About ${title}.`, ...extra });

let tmp, gw, pub, siteUser, allowedSite, otherSite, browser;
const contexts = [];

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'feedgate-e2e-bin-'));
  const bin = await buildGateway(tmp);
  const [gport, aport, oport] = await Promise.all([freePort(), freePort(), freePort()]);
  const allowedOrigin = `http://127.0.0.1:${aport}`;
  gw = await new Gateway(bin, { port: gport, origins: [allowedOrigin] }).start();
  pub = await gw.addUser('publisher', { rights: 'all' });
  // The site's token reads only its two topics.
  siteUser = await gw.addUser('site', { rights: 'subscribe,retrieve', topics: [topic('embed'), topic('jquery')] });
  for (const t of ['embed', 'jquery']) {
    await gw.subscribe(pub, topic(t));
    await gw.subscribe(siteUser, topic(t));
  }
  const values = { GATEWAY: gw.origin, TOPIC: topic('embed'), TOPIC_JQ: topic('jquery'), LOGIN: siteUser.login, TOKEN: siteUser.token };
  allowedSite = await startSite(aport, values);
  otherSite = await startSite(oport, values); // an origin the gateway does not allow
  await stat(CHROMIUM).catch(() => { throw new Error(`${CHROMIUM} is missing: run web/e2e/run.sh, which installs Debian's chromium`); });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}, { timeout: 300000 });

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close();
  if (allowedSite) await allowedSite.close();
  if (otherSite) await otherSite.close();
  if (gw) await gw.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function open(url) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 760 }, deviceScaleFactor: 1 });
  contexts.push(context);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e));
  await page.goto(url);
  return { page, errors };
}

const waitLive = (page, sel, timeout = 10000) =>
  page.waitForSelector(`${sel} .feedgate-live[data-state=live]`, { timeout });

const titles = (page, sel) =>
  page.$$eval(`${sel} li.feedgate-item .feedgate-link`, as => as.map(a => a.textContent));

const cursors = (page, sel) =>
  page.$$eval(`${sel} li.feedgate-item`, lis => lis.map(li => li.dataset.cursor));

function waitTitle(page, sel, title, timeout) {
  return page.waitForFunction(([sel, title]) =>
    [...document.querySelectorAll(`${sel} .feedgate-link`)].some(a => a.textContent === title),
  [sel, title], { timeout, polling: 10 });
}

// publishAndSee fat-pings entries and asserts that the newest shows in sel within the budget.
async function publishAndSee(page, sel, t, entries, budget = LIVE_BUDGET) {
  const start = performance.now();
  await gw.publish(pub, t, entries);
  const title = entries[entries.length - 1].title;
  await waitTitle(page, sel, title, budget + 4000).catch(() => {
    throw new Error(`"${title}" did not show in ${sel} within ${budget + 4000} ms`);
  });
  const ms = Math.round(performance.now() - start);
  assert.ok(ms <= budget, `"${title}" showed after ${ms} ms; it must show within ${budget} ms`);
  return ms;
}

function assertNoDuplicates(list, what) {
  const dup = list.filter((c, i) => list.indexOf(c) !== i);
  assert.deepEqual(dup, [], `${what} holds duplicates: ${dup.join(', ')}`);
}

// A page of the allowed origin with a widget whose handle and deliveries the test can read.
async function widgetPage(origin, opts) {
  const { page, errors } = await open(origin + '/blank.html');
  await page.evaluate(o => {
    window.delivered = [];
    window.w = Feedgate.widget(document.getElementById('feed'), Object.assign(o, {
      max: 100,
      onItems: items => window.delivered.push(...items.map(i => i.cursor)),
    }));
  }, opts);
  return { page, errors };
}

describe('feedgate.js', () => {
  test('is under 10 KB minified', async t => {
    const src = await readFile(resolve(repoRoot, 'web/static/feedgate.js'), 'utf8');
    const { code } = await minify(src, { ecma: 2017, compress: true, mangle: true });
    t.diagnostic(`feedgate.js: ${src.length} bytes, ${code.length} minified`);
    assert.ok(code.length < 10 * 1024, `feedgate.js is ${code.length} bytes minified; keep it under 10240`);
  });
});

describe('demo page', () => {
  test('shows the last items, then fat-pinged items within 1 s', { timeout: 60000 }, async t => {
    const T = topic('demo');
    await gw.subscribe(pub, T);
    await gw.publish(pub, T, [
      entry('feedgate 1.0 released', { summary: '<p>Streams, SSE, WebSocket and webhooks in <b>one</b> gateway.</p>' }),
      entry('Embedding a live feed in three lines', { summary: 'A read-only token, an allowed origin and a script tag.' }),
    ]);
    const { page, errors } = await open(gw.origin + '/demo');
    assert.equal(await page.inputValue('#hub'), gw.origin + '/', 'the hub field defaults to this gateway');
    await page.fill('#topic', T);
    await page.fill('#login', pub.login);
    await page.fill('#token', pub.token);
    await page.click('#start');
    await waitLive(page, '#feed');
    assert.deepEqual(await titles(page, '#feed'), ['Embedding a live feed in three lines', 'feedgate 1.0 released']);
    assert.match(await page.textContent('#transport'), /Server-Sent Events/);

    const times = [];
    for (const title of ['Redis Cluster support', 'Benchmarks: 90k deliveries per second', 'Hello from a fat ping'])
      times.push(await publishAndSee(page, '#feed', T, [entry(title)]));
    t.diagnostic(`fat ping to item shown: ${times.join(', ')} ms`);
    assert.equal((await titles(page, '#feed'))[0], 'Hello from a fat ping', 'the newest item is on top');
    assert.equal(await page.getAttribute('#feed [role=log]', 'aria-live'), 'polite');
    assertNoDuplicates(await cursors(page, '#feed'), 'the list');

    await mkdir(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'demo.png');
    await page.screenshot({ path: shot, fullPage: true });
    const docsMissing = await stat(DOCS_SHOT).then(() => false, () => true);
    if (docsMissing || process.env.FEEDGATE_UPDATE_DOCS === '1') {
      await mkdir(resolve(DOCS_SHOT, '..'), { recursive: true });
      await copyFile(shot, DOCS_SHOT);
    }
    t.diagnostic(`screenshot: ${shot}`);
    assert.deepEqual(errors, []);
  });
});

describe('landing page', () => {
  test('a browser at / gets the landing page; a hub client keeps the API', { timeout: 30000 }, async () => {
    const { page, errors } = await open(gw.origin + '/');
    assert.match(await page.title(), /feedgate/);
    for (const href of ['/demo', '/healthz']) assert.ok(await page.$(`a[href="${href}"]`), `no link to ${href}`);
    assert.ok(await page.$('a[href*="#readme"]'), 'no link to the documentation');
    assert.match(await page.textContent('pre'), new RegExp(gw.origin.replace(/[.:/]/g, '\\$&')));
    const api = await fetch(gw.origin + '/');
    assert.equal(api.status, 401, 'a client that does not ask for HTML gets the hub endpoint');
    assert.deepEqual(errors, []);
  });
});

describe('README snippet on another origin', () => {
  test('the widget and the jQuery plugin go live; feed HTML shows as text and never runs', { timeout: 60000 }, async t => {
    const { page, errors } = await open(allowedSite.origin + '/embed.html');
    await waitLive(page, '#news');
    await waitLive(page, '#headlines');
    assert.equal(await page.getAttribute('#news .feedgate-live', 'title'), 'sse', 'an allowed origin streams by SSE');

    const evilTitle = '<script>window.__pwned="title"</script><img src=x onerror="window.__pwned=\'img\'"> Breaking';
    const ms = await publishAndSee(page, '#news', topic('embed'), [entry(evilTitle, {
      summary: '<p>Hello <b>world</b></p><script>window.__pwned="summary"</script><img src="x" onerror="window.__pwned=\'summary img\'">',
      link: 'https://blog.example/breaking',
    })]);
    t.diagnostic(`widget: ${ms} ms`);
    await sleep(300); // time for an injected onerror to fire, if any
    const item = await page.$eval('#news li.feedgate-item', li => ({
      title: li.querySelector('.feedgate-link').textContent,
      href: li.querySelector('a') && li.querySelector('a').href,
      summary: li.querySelector('.feedgate-summary') && li.querySelector('.feedgate-summary').textContent,
      elements: [...li.querySelectorAll('*')].map(e => e.tagName.toLowerCase()),
    }));
    assert.equal(item.title, evilTitle, 'the title shows as text, markup and all');
    assert.equal(item.summary, 'Hello world', 'the summary shows as text with its tags stripped');
    assert.equal(item.href, 'https://blog.example/breaking');
    assert.ok(!item.elements.includes('script') && !item.elements.includes('img'), `elements from the feed were inserted: ${item.elements}`);
    assert.equal(await page.evaluate(() => window.__pwned), undefined, 'script from the feed ran');

    await page.evaluate(() => {
      window.jqEvents = [];
      $('#headlines').on('feedgate:items', (e, items) => window.jqEvents.push(items.map(i => i.title)));
    });
    const jms = await publishAndSee(page, '#headlines', topic('jquery'), [entry('Posted for jQuery')]);
    t.diagnostic(`jQuery plugin: ${jms} ms`);
    assert.deepEqual(await page.evaluate(() => window.jqEvents), [['Posted for jQuery']]);

    const got = await page.evaluate(([T, login, token]) =>
      $.feedgate.retrieve({ topic: T, login, token, count: 5 }).then(a => a.items.map(i => i.title)),
    [topic('jquery'), siteUser.login, siteUser.token]);
    assert.equal(got[0], 'Posted for jQuery', '$.feedgate.retrieve answers the newest items');
    const denied = await page.evaluate(([T, login, token]) =>
      $.feedgate.retrieve({ topic: T, login, token }).then(() => 'resolved', e => e.code),
    [topic('elsewhere'), siteUser.login, siteUser.token]);
    assert.equal(denied, 403, '$.feedgate.retrieve rejects a topic outside the token\'s scope');
    assert.deepEqual(errors, []);
  });

  test('an origin the gateway does not allow falls back to JSONP and long-polling', { timeout: 60000 }, async t => {
    const { page, errors } = await open(otherSite.origin + '/embed.html');
    await waitLive(page, '#news', 20000);
    await page.waitForSelector('#news .feedgate-live[title=poll]', { timeout: 20000 });
    const ms = await publishAndSee(page, '#news', topic('embed'), [entry('Delivered by a long-poll')]);
    t.diagnostic(`long-poll via JSONP: ${ms} ms`);
    assertNoDuplicates(await cursors(page, '#news'), 'the list');
    assert.deepEqual(errors, []);
  });
});

describe('Superfeedr clients', () => {
  // Superfeedr's jQuery plugin (and angular-superfeedr) open an EventSource on the retrieve URL
  // with format=json, the credential and count in the query; the browser sends
  // Accept: text/event-stream, which must win over format=json.
  test('an EventSource opened as Superfeedr\'s plugin does gets the last items, then a new one', { timeout: 60000 }, async () => {
    const T = topic('superfeedr-es');
    const sf = await gw.addUser('sfclient', { rights: 'subscribe,retrieve' });
    await gw.subscribe(sf, T);
    await gw.subscribe(pub, T);
    await gw.publish(pub, T, [entry('One'), entry('Two'), entry('Three')]);
    const { page, errors } = await open(allowedSite.origin + '/blank.html');
    await page.evaluate(([hub, T, login, token]) => {
      window.notes = [];
      window.esErrors = 0;
      const url = hub + '?hub.mode=retrieve&hub.topic=' + encodeURIComponent(T) + '&format=json' +
        '&authorization=' + encodeURIComponent(btoa(login + ':' + token)) + '&count=2';
      window.es = new EventSource(url);
      window.es.addEventListener('notification', e => window.notes.push(JSON.parse(e.data)));
      window.es.onerror = () => { window.esErrors++; };
    }, [gw.url, T, sf.login, sf.token]);
    const first = await page.waitForFunction(() => window.notes.length >= 1 && window.notes[0], null, { timeout: 10000 })
      .then(h => h.jsonValue())
      .catch(async () => { throw new Error(`no notification event; EventSource errors: ${await page.evaluate(() => window.esErrors)}, readyState ${await page.evaluate(() => window.es.readyState)}`); });
    assert.deepEqual(first.items.map(i => i.title), ['Three', 'Two'], 'the first event holds the last count=2 items');
    await gw.publish(pub, T, [entry('Four, after connecting')]);
    const live = await page.waitForFunction(() => window.notes.find(n => n.items.some(i => i.title === 'Four, after connecting')), null, { timeout: 10000 })
      .then(h => h.jsonValue())
      .catch(() => { throw new Error('the item published after the EventSource connected did not arrive'); });
    assert.equal(live.status.feed, T);
    assert.equal(await page.evaluate(() => window.es.readyState), 1, 'the EventSource stays open');
    assert.equal(await page.evaluate(() => window.esErrors), 0, 'the EventSource saw no error');
    await page.evaluate(() => window.es.close());
    assert.deepEqual(errors, []);
  });

  test('text marked as text shows as that text in the widget, never as markup', { timeout: 60000 }, async () => {
    const T = topic('text-stays-text');
    await gw.subscribe(pub, T);
    const { page, errors } = await widgetPage(allowedSite.origin, { topic: T, login: pub.login, token: pub.token });
    await waitLive(page, '#feed');
    const text = 'a <b>bold</b> & <i>plain</i> claim';
    const body = `<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Text</title><id>urn:text</id><updated>${new Date().toISOString()}</updated>
<entry><id>urn:text:1</id><title type="html">Markup &lt;i&gt;title&lt;/i&gt;</title><updated>${new Date().toISOString()}</updated>
<link href="https://blog.example/text"/><summary type="text">${text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')}</summary></entry></feed>`;
    const r = await gw.call(pub, { 'hub.mode': 'publish', 'hub.topic': T }, { method: 'POST', body, type: 'application/atom+xml' });
    assert.equal(r.status, 200, r.text);
    await waitTitle(page, '#feed', 'Markup title', 10000);
    const item = await page.$eval('#feed li.feedgate-item', li => ({
      summary: li.querySelector('.feedgate-summary') && li.querySelector('.feedgate-summary').textContent,
      elements: [...li.querySelectorAll('*')].map(e => e.tagName.toLowerCase()),
    }));
    assert.equal(item.summary, text, 'the summary shows the text the feed wrote');
    assert.ok(!item.elements.includes('b') && !item.elements.includes('i'), `elements made of text: ${item.elements}`);
    assert.deepEqual(errors, []);
  });
});

describe('live connection', () => {
  for (const kind of ['sse', 'ws', 'poll']) {
    test(`${kind}: a dropped connection resumes and fills the gap with no duplicate`, { timeout: 60000 }, async () => {
      const T = topic('gap-' + kind);
      await gw.subscribe(pub, T);
      await gw.publish(pub, T, [entry('before 1'), entry('before 2')]);
      const { page, errors } = await widgetPage(allowedSite.origin, { topic: T, login: pub.login, token: pub.token, transports: [kind] });
      await waitLive(page, '#feed');
      assert.equal(await page.evaluate(() => w.connection.transport), kind);
      await publishAndSee(page, '#feed', T, [entry(`${kind} live`)]);

      // Drop the connection; publish while the client is away.
      await page.evaluate(() => w.connection.reconnect(1500));
      assert.equal(await page.evaluate(() => w.connection.state), 'reconnecting');
      await gw.publish(pub, T, [entry('gap 1'), entry('gap 2')]);
      await gw.publish(pub, T, [entry('gap 3')]);
      await waitTitle(page, '#feed', 'gap 3', 10000);
      await waitLive(page, '#feed');
      await publishAndSee(page, '#feed', T, [entry('after the gap')]);

      const delivered = await page.evaluate(() => window.delivered);
      assertNoDuplicates(delivered, 'the delivered cursors');
      const shown = await cursors(page, '#feed');
      assert.deepEqual([...shown].reverse(), delivered.slice().sort(), 'every delivered item is shown once, newest on top');
      assert.deepEqual(await titles(page, '#feed'),
        ['after the gap', 'gap 3', 'gap 2', 'gap 1', `${kind} live`, 'before 2', 'before 1']);
      const nums = delivered.map(Number).sort((a, b) => a - b);
      nums.forEach((n, i) => i && assert.equal(n, nums[i - 1] + 1, `cursors skip from ${nums[i - 1]} to ${n}`));
      assert.deepEqual(errors, []);
    });
  }

  test('sse with several topics: one stream, resumed with its token, nothing twice', { timeout: 60000 }, async () => {
    const [A, B] = [topic('multi-a'), topic('multi-b')];
    for (const T of [A, B]) {
      await gw.subscribe(pub, T);
      await gw.publish(pub, T, [entry(`${T} old`)]);
    }
    const { page, errors } = await widgetPage(allowedSite.origin, { topics: [A, B], login: pub.login, token: pub.token });
    await waitLive(page, '#feed');
    await publishAndSee(page, '#feed', A, [entry('A live')]);
    await publishAndSee(page, '#feed', B, [entry('B live')]);
    await page.evaluate(() => w.connection.reconnect(1500));
    await gw.publish(pub, A, [entry('A gap')]);
    await gw.publish(pub, B, [entry('B gap')]);
    await waitTitle(page, '#feed', 'A gap', 10000);
    await waitTitle(page, '#feed', 'B gap', 10000);
    await waitLive(page, '#feed');
    await publishAndSee(page, '#feed', B, [entry('B after')]);
    const shown = await page.$$eval('#feed li.feedgate-item', lis => lis.map(li => li.dataset.topic + ' ' + li.dataset.cursor));
    assertNoDuplicates(shown, 'the list');
    const got = (await titles(page, '#feed')).sort();
    assert.deepEqual(got, ['A gap', 'A live', 'B after', 'B gap', 'B live', `${A} old`, `${B} old`].sort());
    assert.deepEqual(errors, []);
  });

  test('a gateway restart: the client reconnects by itself and misses nothing', { timeout: 90000 }, async t => {
    const T = topic('restart');
    await gw.subscribe(pub, T);
    await gw.publish(pub, T, [entry('before the restart')]);
    const { page, errors } = await widgetPage(allowedSite.origin, { topic: T, login: pub.login, token: pub.token });
    await waitLive(page, '#feed');

    await gw.stop('SIGTERM');
    await page.waitForSelector('#feed .feedgate-live:not([data-state=live])', { timeout: 10000 });
    await gw.start();
    const start = performance.now();
    await gw.publish(pub, T, [entry('while away 1'), entry('while away 2')]);
    await waitTitle(page, '#feed', 'while away 2', 30000);
    await waitLive(page, '#feed');
    t.diagnostic(`caught up ${Math.round(performance.now() - start)} ms after the restart`);
    await publishAndSee(page, '#feed', T, [entry('after the restart')]);

    const delivered = await page.evaluate(() => window.delivered);
    assertNoDuplicates(delivered, 'the delivered cursors');
    assert.deepEqual(await titles(page, '#feed'), ['after the restart', 'while away 2', 'while away 1', 'before the restart']);
    assert.deepEqual(errors, []);
  });
});

describe('widget', () => {
  test('keeps at most max items, links only http(s) and closes', { timeout: 30000 }, async () => {
    const T = topic('cap');
    await gw.subscribe(pub, T);
    await gw.publish(pub, T, [1, 2, 3, 4].map(i => entry(`old ${i}`)));
    const { page, errors } = await open(allowedSite.origin + '/blank.html');
    await page.evaluate(o => { window.w = Feedgate.widget('#feed', o); }, { topic: T, login: pub.login, token: pub.token, max: 3 });
    await waitLive(page, '#feed');
    assert.deepEqual(await titles(page, '#feed'), ['old 4', 'old 3', 'old 2']);
    await publishAndSee(page, '#feed', T, [entry('unsafe link', { link: 'javascript:window.__pwned=1' }), entry('data link', { link: 'data:text/html,hi' })]);
    assert.deepEqual(await titles(page, '#feed'), ['data link', 'unsafe link', 'old 4']);
    const hrefs = await page.$$eval('#feed a', as => as.map(a => a.getAttribute('href')));
    assert.deepEqual(hrefs.filter(h => !/^https?:/.test(h)), [], 'only http and https links');
    await page.evaluate(() => w.close());
    assert.equal(await page.getAttribute('#feed .feedgate-live', 'data-state'), 'closed');
    assert.deepEqual(errors, []);
  });
});

describe('errors', () => {
  const cases = [
    { name: 'a token scoped to another topic', code: 403, user: () => gw.addUser('scoped', { rights: 'retrieve', topics: [topic('embed')] }) },
    { name: 'a user without a subscription to the topic', code: 404, user: () => gw.addUser('stranger', { rights: 'subscribe,retrieve' }) },
    { name: 'a wrong token', code: 401, user: async () => ({ login: 'site', token: 'not-the-token-0000000' }) },
  ];
  for (const c of cases) {
    test(`${c.name} shows a visible error`, { timeout: 30000 }, async () => {
      const T = topic('private');
      await gw.subscribe(pub, T);
      const u = await c.user();
      const { page, errors } = await widgetPage(allowedSite.origin, { topic: T, login: u.login, token: u.token });
      const alert = await page.waitForSelector('#feed .feedgate-error:not([hidden])', { timeout: 5000 });
      assert.ok(await alert.isVisible(), 'the error is visible');
      assert.equal(await alert.getAttribute('role'), 'alert');
      assert.match(await alert.textContent(), new RegExp(`^${c.code}: \\S`));
      assert.equal(await page.getAttribute('#feed .feedgate-live', 'data-state'), 'error');
      assert.equal(await page.evaluate(() => w.connection.state), 'error', 'the client stops: retrying cannot help');
      assert.deepEqual(errors, []);
    });
  }
});
