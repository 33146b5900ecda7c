// Browser tests of the admin console (served by the admin listener at /admin/): a real gateway
// built from this repository, Debian's Chromium driven by playwright-core, a loopback site that
// serves a feed and a webhook callback that fails until told otherwise. Screenshots of the views
// go to test-artifacts/, and to docs/ when missing there or with FEEDGATE_UPDATE_DOCS=1.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { atom, buildGateway, freePort, Gateway, repoRoot } from '../lib/gateway.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
  '--no-first-run', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = resolve(import.meta.dirname, '../test-artifacts');
// How soon the console must show a change (it is pushed once a second).
const LIVE = 8000;

let tmp, gw, root, site, browser, page, requests, errors;
let seq = 0;
const entry = title => ({ id: `urn:console:${++seq}:${Date.now()}`, title, summary: `About ${title}.` });

// The loopback site: /feed.xml is a feed (what ingest fetches), /hook a webhook callback that
// answers 503 with Retry-After an hour until hook.healthy, and records what it gets.
const hook = { healthy: false, posts: [], waiters: [] };
function startSite(port) {
  const srv = createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.searchParams.get('hub.challenge')) {
      res.end(u.searchParams.get('hub.challenge'));
    } else if (req.method === 'GET' && u.pathname.endsWith('.xml')) {
      res.setHeader('Content-Type', 'application/atom+xml');
      res.end(atom(`http://127.0.0.1:${port}${u.pathname}`, [{ id: `urn:site:${u.pathname}`, title: 'Hello from the site' }]));
    } else if (req.method === 'POST' && u.pathname === '/hook') {
      let body = '';
      req.on('data', d => { body += d; });
      req.on('end', () => {
        if (!hook.healthy) {
          res.writeHead(503, { 'Retry-After': '3600', 'Content-Type': 'text/plain' });
          res.end('down for maintenance');
          return;
        }
        hook.posts.push(body);
        for (const w of hook.waiters.splice(0)) w();
        res.writeHead(204);
        res.end();
      });
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise(ok => srv.listen(port, '127.0.0.1', () => ok(srv)));
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'feedgate-e2e-console-'));
  const bin = await buildGateway(tmp);
  const [gport, aport, sport] = await Promise.all([freePort(), freePort(), freePort()]);
  gw = await new Gateway(bin, { port: gport, adminPort: aport, allowPrivate: true, args: ['--node-id', 'gateway-1'] }).start();
  root = await gw.addUser('root', { rights: 'all' });
  site = await startSite(sport);
  site.origin = `http://127.0.0.1:${sport}`;
  await stat(CHROMIUM).catch(() => { throw new Error(`${CHROMIUM} is missing: run web/e2e/run.sh, which installs Debian's chromium`); });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  page = await context.newPage();
  requests = [];
  errors = [];
  page.on('request', r => requests.push(r.url()));
  page.on('pageerror', e => errors.push(e));
  // Console errors, but the browser's own notes of 4xx answers (a wrong token is one).
  page.on('console', m => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(new Error(m.text())); });
}, { timeout: 300000 });

after(async () => {
  if (browser) await browser.close();
  if (site) await new Promise(ok => site.close(ok));
  if (gw) await gw.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function screenshot(t, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  const shot = join(ARTIFACTS, name);
  await page.screenshot({ path: shot, fullPage: true, animations: 'disabled' });
  const docs = resolve(repoRoot, 'docs', name);
  if (process.env.FEEDGATE_UPDATE_DOCS === '1' || await stat(docs).then(() => false, () => true)) await copyFile(shot, docs);
  t.diagnostic(`screenshot: ${shot}`);
}

// row returns the locator of the table row whose row header (first cell) contains text.
const row = (tbody, text) => page.locator(`${tbody} tr`).filter({ has: page.locator('th', { hasText: text }) });
const field = (r, name) => r.locator(`td[data-field="${name}"] > span:first-child`);
const number = async loc => Number(await loc.textContent());

async function goTo(view) {
  await page.getByRole('link', { name: view }).click();
  await page.locator('section:not([hidden]) h1').waitFor();
}

async function hubCall(creds, params) {
  const u = new URL(gw.url);
  for (const [k, v] of Object.entries(params)) u.searchParams.append(k, v);
  const r = await fetch(u, { headers: { Authorization: 'Basic ' + Buffer.from(creds).toString('base64'), Accept: 'application/json' } });
  await r.text();
  return r.status;
}

async function waitStatus(creds, want, what) {
  const deadline = Date.now() + 10000;
  let got;
  while (Date.now() < deadline) {
    if ((got = await hubCall(creds, { 'hub.mode': 'list' })) === want) return;
    await new Promise(ok => setTimeout(ok, 200));
  }
  throw new Error(`${what}: the hub answered ${got}, want ${want} within 10 s`);
}

describe('admin console', () => {
  test('signs in with the keyboard; the token stays in the tab, out of every URL', { timeout: 60000 }, async () => {
    await page.goto(gw.adminOrigin + '/admin/');
    assert.equal(await page.title(), 'feedgate admin');
    // A wrong token is refused with a message, and no browser prompt.
    await page.locator('#signin-form').getByLabel('Login').fill('root');
    await page.locator('#signin-form').getByLabel('Token').fill('not-the-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('The login or the token is not accepted.').waitFor();

    // Keyboard only: the focus order runs login, token, the button.
    await page.locator('#signin-login').focus();
    await page.keyboard.press('Control+A');
    await page.keyboard.type('root');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-token');
    await page.keyboard.press('Control+A');
    await page.keyboard.type(root.token);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Sign in');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'the focused button shows its focus');
    await page.keyboard.press('Enter');
    await page.locator('#live[data-state=live]').waitFor({ timeout: LIVE });
    await page.getByRole('heading', { name: 'Users and tokens' }).waitFor();
    await row('#users-rows', 'root').waitFor();

    assert.ok(await page.evaluate(() => sessionStorage.getItem('feedgate-admin')), 'the credential is in sessionStorage');
    assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing is kept in localStorage');
    for (const u of requests) assert.ok(!u.includes(root.token) && !/authorization|access_token/i.test(u), `a URL carries a credential: ${u}`);
    assert.match(await page.textContent('#node'), /gateway-1/);

    // Views by keyboard: the nav links are links, the view's heading takes the focus.
    await page.getByRole('link', { name: 'Nodes' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.activeElement?.id === 'nodes-h');
    assert.equal(await page.getAttribute('nav a[href="#nodes"]', 'aria-current'), 'page');
    // A reload keeps the session of this tab.
    await page.reload();
    await page.locator('#live[data-state=live]').waitFor({ timeout: LIVE });
    assert.equal(await page.isVisible('#nodes'), true);
    assert.deepEqual(errors, []);
  });

  test('adds a user, then rotates its token', { timeout: 60000 }, async t => {
    await goTo('Users and tokens');
    const form = page.locator('#add-form');
    await form.getByLabel('Login').fill('carol');
    await form.getByLabel('list', { exact: true }).check();
    await form.getByLabel('Expires').fill('720h');
    await page.getByRole('button', { name: 'Add user' }).click();
    const box = page.locator('#token-box');
    await box.waitFor();
    assert.match(await page.textContent('#token-what'), /new user carol, valid until/);
    const first = (await page.textContent('#token-value')).trim();
    assert.ok(first.length >= 20, `token ${first}`);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'token-box', 'the new token takes the focus');
    assert.equal(await hubCall(`carol:${first}`, { 'hub.mode': 'list' }), 200, 'the token shown works');
    const carol = row('#users-rows', 'carol');
    await carol.waitFor({ timeout: LIVE });
    assert.equal(await field(carol, 'rights').textContent(), 'list, retrieve');
    assert.match(await field(carol, 'expires').textContent(), /in (29|30) d/);
    await page.getByRole('button', { name: 'Done' }).click();

    // Rotate: a dialog asks first, Escape cancels it.
    await page.getByRole('button', { name: 'Rotate the token of carol' }).click();
    await page.getByRole('dialog').waitFor();
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'hidden' });
    assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Rotate the token of carol',
      'the focus returns to the button');
    await page.keyboard.press('Enter');
    await page.getByRole('dialog').waitFor();
    // The dialog's close event is queued: a cancel and a new question in one task (as a busy
    // browser may order a key press before that event) still answer the new question alone.
    await page.evaluate(() => {
      document.getElementById('confirm').close();
      document.querySelector('[aria-label="Rotate the token of carol"]').click();
    });
    await page.getByRole('dialog').getByLabel('Expires').fill('24h');
    await page.getByRole('dialog').getByRole('button', { name: 'Rotate' }).click();
    await page.getByText('New token of carol').waitFor();
    const second = (await page.textContent('#token-value')).trim();
    assert.notEqual(second, first);
    await waitStatus(`carol:${first}`, 401, 'the rotated-out token');
    assert.equal(await hubCall(`carol:${second}`, { 'hub.mode': 'list' }), 200, 'the new token works');
    await page.waitForFunction(() => /in (23|24) h/.test(document.querySelector('#users-rows tr[data-key="carol"] td[data-field="expires"]').textContent),
      null, { timeout: LIVE });
    await page.getByRole('button', { name: 'Done' }).click();
    await screenshot(t, 'console-users.png');
    assert.deepEqual(errors, []);
  });

  test("watches a topic's counters move while items are published", { timeout: 90000 }, async t => {
    const T = site.origin + '/news.xml';
    const gone = site.origin + '/gone.rss'; // answers 404
    await gw.subscribe(root, T);
    await gw.subscribe(root, gone);
    // A live connection on the topic.
    const ctl = new AbortController();
    const u = new URL(gw.url);
    u.search = new URLSearchParams({ 'hub.mode': 'retrieve', 'hub.topic': T, format: 'json' }).toString();
    const sse = await fetch(u, { headers: { Authorization: root.basic, Accept: 'text/event-stream' }, signal: ctl.signal });
    assert.equal(sse.status, 200);
    try {
      await goTo('Topics');
      const r = row('#topics-rows', T);
      await r.waitFor({ timeout: LIVE });
      await page.waitForFunction(([key]) => {
        const tr = [...document.querySelectorAll('#topics-rows tr')].find(x => x.dataset.key === key);
        return tr && tr.querySelector('td[data-field=connections]').textContent === '1' &&
          tr.querySelector('td[data-field=status]').textContent.startsWith('200');
      }, [T], { timeout: LIVE });
      assert.equal(await number(field(r, 'subscribers')), 1);
      assert.match(await field(r, 'hub').textContent(), /no hub: polled/);
      assert.match(await field(r, 'nextFetch').textContent(), /^in /);
      // A topic whose fetch fails shows it, with the error.
      const g = row('#topics-rows', gone);
      await page.waitForFunction(([key]) => {
        const tr = [...document.querySelectorAll('#topics-rows tr')].find(x => x.dataset.key === key);
        return tr && tr.querySelector('td[data-field=status]').textContent.startsWith('404');
      }, [gone], { timeout: LIVE });
      assert.match(await g.locator('td[data-field=lastFetch] .sub').textContent(), /404 Not Found/);
      assert.equal(await g.locator('td[data-field=status] > span:first-child').getAttribute('class'), 'bad');

      const before = requests.length;
      let items = await number(field(r, 'items'));
      for (let i = 1; i <= 3; i++) {
        const batch = [entry(`Fat ping ${i}a`), entry(`Fat ping ${i}b`)];
        await gw.publish(root, T, batch);
        const want = items + batch.length;
        await page.waitForFunction(([key, want]) => {
          const tr = [...document.querySelectorAll('#topics-rows tr')].find(x => x.dataset.key === key);
          return Number(tr.querySelector('td[data-field=items]').textContent) === want;
        }, [T, want], { timeout: LIVE }).catch(() => { throw new Error(`the items held did not reach ${want} after fat ping ${i}`); });
        items = want;
      }
      const polled = requests.slice(before).filter(x => x.includes('/admin/api/'));
      assert.deepEqual(polled, [], 'the page asked the API while following its event stream (it must not poll)');
      await screenshot(t, 'console-topics.png');
    } finally {
      ctl.abort();
    }
    assert.deepEqual(errors, []);
  });

  test('retries a failing webhook delivery at once', { timeout: 90000 }, async t => {
    const T = site.origin + '/hooked.xml';
    const callback = site.origin + '/hook';
    const r = await gw.call(root, { 'hub.mode': 'subscribe', 'hub.topic': T, 'hub.callback': callback, format: 'json' }, { method: 'POST' });
    assert.equal(r.status, 204, r.text);
    await gw.publish(root, T, [entry('Delivered after the fix')]);
    await goTo('Webhook deliveries');
    const d = row('#deliveries-rows', T);
    await page.waitForFunction(() => {
      const tr = document.querySelector('#deliveries-rows tr[data-key]');
      return tr && tr.querySelector('td[data-field=health]').textContent.startsWith('failing') &&
        /retry in (59|60) min/.test(tr.querySelector('td[data-field=next]').textContent);
    }, null, { timeout: 20000 });
    assert.match(await field(d, 'lastError').textContent(), /503/);
    assert.ok(await number(field(d, 'queued')) >= 1);
    assert.equal(await page.textContent('#queue dd[data-stat=failing]'), '1');
    await screenshot(t, 'console-deliveries.png');

    hook.healthy = true;
    const got = new Promise(ok => hook.waiters.push(ok));
    await page.getByRole('button', { name: `Retry now: delivery of ${T} to ${callback}` }).click();
    await Promise.race([got, new Promise((_, fail) => setTimeout(() => fail(new Error('no delivery within 10 s of "Retry now" (the back-off had an hour to run)')), 10000))]);
    assert.match(hook.posts.at(-1), /Delivered after the fix/);
    await page.waitForFunction(() => {
      const tr = document.querySelector('#deliveries-rows tr[data-key]');
      return tr.querySelector('td[data-field=health]').textContent.startsWith('healthy') &&
        tr.querySelector('td[data-field=queued]').textContent === '0';
    }, null, { timeout: LIVE });
    assert.equal(await page.textContent('#queue dd[data-stat=failing]'), '0');
    assert.deepEqual(errors, []);
  });

  test('lists live connections by user and form, and the nodes', { timeout: 60000 }, async t => {
    const T = site.origin + '/news.xml';
    const ctl = new AbortController();
    const u = new URL(gw.url);
    u.search = new URLSearchParams({ 'hub.mode': 'retrieve', 'hub.topic': T, 'wait': 'stream', format: 'json' }).toString();
    const stream = await fetch(u, { headers: { Authorization: root.basic }, signal: ctl.signal });
    assert.equal(stream.status, 200);
    try {
      await goTo('Connections');
      await page.waitForFunction(() => [...document.querySelectorAll('#connections-rows tr[data-key]')]
        .some(tr => tr.textContent.includes('ndjson') && tr.textContent.includes('root')), null, { timeout: LIVE });
      assert.match(await page.textContent('#connections-total'), /1 live connection on 1 node \(ndjson 1\)/);
      await goTo('Nodes');
      const n = row('#nodes-rows', 'gateway-1');
      await n.waitFor();
      assert.match(await n.locator('th').textContent(), /gateway-1 \(this node\)/);
      assert.equal(await field(n, 'role').textContent(), 'all');
      assert.equal(await field(n, 'store').textContent(), 'embedded');
      assert.match(await field(n, 'addresses').textContent(), new RegExp(gw.origin.replace(/[.:/]/g, '\\$&')));
      await page.waitForFunction(() => document.querySelector('#nodes-rows td[data-field=connections]').textContent === '1', null, { timeout: LIVE });
      await screenshot(t, 'console-nodes.png');
    } finally {
      ctl.abort();
    }
    // Signing out forgets the credential.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('feedgate-admin')), null);
    assert.deepEqual(errors, []);
  });
});
