// A signed token in a browser: `gateway token mint` (HS256, --jwt-secret) makes a short-lived,
// topic-scoped token that a page of another origin passes as access_token= in an EventSource
// URL, and the page sees a fat-pinged item arrive. A token scoped to another topic is refused.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { atom, buildGateway, freePort, Gateway } from '../lib/gateway.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
  '--no-first-run', '--disable-component-update', '--disable-sync'];
const SECRET = 'e2e-secret-long-enough-for-hs256-0123456789';

let tmp, gw, pub, site, browser, context;

// The site: a blank page (the page that embeds the feed) and the feed itself, on loopback.
function startSite(port) {
  const srv = createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname.endsWith('.xml')) {
      res.setHeader('Content-Type', 'application/atom+xml');
      res.end(atom(`http://127.0.0.1:${port}${u.pathname}`, [{ id: `urn:jwt:${u.pathname}`, title: 'Already there' }]));
    } else {
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.end('<!doctype html><meta charset="utf-8"><title>site</title><ul id="items"></ul>');
    }
  });
  return new Promise(ok => srv.listen(port, '127.0.0.1', () => ok(srv)));
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'feedgate-e2e-jwt-'));
  const bin = await buildGateway(tmp);
  const [gport, sport] = await Promise.all([freePort(), freePort()]);
  site = await startSite(sport);
  site.origin = `http://127.0.0.1:${sport}`;
  gw = await new Gateway(bin, { port: gport, origins: [site.origin], allowPrivate: true, env: { FEEDGATE_JWT_SECRET: SECRET } }).start();
  pub = await gw.addUser('publisher', { rights: 'all' });
  await stat(CHROMIUM).catch(() => { throw new Error(`${CHROMIUM} is missing: run web/e2e/run.sh, which installs Debian's chromium`); });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  context = await browser.newContext();
}, { timeout: 300000 });

after(async () => {
  if (context) await context.close();
  if (browser) await browser.close();
  if (site) await new Promise(ok => site.close(ok));
  if (gw) await gw.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// follow opens the site's page and an EventSource on topic with the signed token; the page
// records the titles of the items it is sent, and the connection's end.
async function follow(topic, jwt) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e));
  await page.goto(site.origin + '/');
  await page.evaluate(({ hub, topic, jwt }) => {
    window.titles = [];
    window.esClosed = false;
    const u = new URL(hub);
    u.search = new URLSearchParams({ 'hub.mode': 'retrieve', 'hub.topic': topic, format: 'json', access_token: jwt }).toString();
    const es = window.es = new EventSource(u);
    es.addEventListener('notification', ev => {
      for (const it of JSON.parse(ev.data).items || []) {
        window.titles.push(it.title);
        const li = document.createElement('li');
        li.textContent = it.title;
        document.getElementById('items').append(li);
      }
    });
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) window.esClosed = true; };
  }, { hub: gw.url, topic, jwt });
  return { page, errors };
}

describe('signed token (JWT) in an EventSource URL', () => {
  test('a minted token passed as access_token= streams a new item to a page of another origin', { timeout: 60000 }, async t => {
    const T = site.origin + '/news.xml';
    await gw.subscribe(pub, T);
    const jwt = await gw.mint({ sub: 'publisher', rights: 'retrieve', topics: T, ttl: '10m' });
    assert.equal(jwt.split('.').length, 3, `gateway token mint printed ${jwt}`);
    const { page, errors } = await follow(T, jwt);
    await page.waitForFunction(() => window.titles.includes('Already there'), null, { timeout: 10000 })
      .catch(() => { throw new Error('the first answer (the items held) did not arrive over the EventSource'); });
    const start = performance.now();
    await gw.publish(pub, T, [{ id: `urn:jwt:new:${Date.now()}`, title: 'Signed and delivered' }]);
    await page.waitForFunction(() => window.titles.includes('Signed and delivered'), null, { timeout: 10000 })
      .catch(() => { throw new Error('the fat-pinged item did not arrive over the EventSource opened with the signed token'); });
    t.diagnostic(`fat ping to the page: ${Math.round(performance.now() - start)} ms`);
    assert.equal(await page.evaluate(() => window.es.readyState), 1, 'the EventSource is open');
    assert.equal(await page.textContent('#items li:last-child'), 'Signed and delivered');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a token scoped to another topic is refused (the EventSource closes, nothing arrives)', { timeout: 60000 }, async () => {
    const T = site.origin + '/other.xml';
    await gw.subscribe(pub, T);
    const jwt = await gw.mint({ sub: 'publisher', rights: 'retrieve', topics: site.origin + '/news.xml', ttl: '10m' });
    const u = new URL(gw.url);
    u.search = new URLSearchParams({ 'hub.mode': 'retrieve', 'hub.topic': T, format: 'json', access_token: jwt }).toString();
    assert.equal((await fetch(u, { headers: { Accept: 'text/event-stream' } })).status, 403, 'outside the token\'s topics');
    const { page, errors } = await follow(T, jwt);
    await page.waitForFunction(() => window.esClosed, null, { timeout: 10000 })
      .catch(() => { throw new Error('the EventSource with a token for another topic did not close'); });
    assert.deepEqual(await page.evaluate(() => window.titles), []);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
