// The live path over TLS and HTTP/2 in Chromium: a gateway serving HTTPS (--tls-cert/--tls-key)
// with a certificate of a CA made by the test, which Chromium is told to trust by its SPKI hash;
// one page opens eight EventSource streams at once (over HTTP/1.1 a browser holds at most six
// connections per origin, so the last two would never open) and each gets every item once:
// those published before it connected and those published while it was connecting and after.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { buildGateway, freePort, Gateway } from '../lib/gateway.mjs';

const run = promisify(execFile);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const STREAMS = 8;
const BEFORE = 3; // items per topic published before the page connects
const DURING = 12; // items per topic published while the streams connect and run

let tmp, gw, browser, spki, user, publisher, topics;

// makeCertificates writes a CA and a certificate for 127.0.0.1 it signs (the served file holds
// the certificate and the CA, as a chain), and returns the paths, the CA's PEM and its SPKI hash.
async function makeCertificates(dir) {
  const f = name => join(dir, name);
  const ossl = args => run('openssl', args, { cwd: dir }).catch(e => {
    throw new Error(`openssl ${args[0]} failed (is openssl installed?): ${e.stderr || e.message}`);
  });
  await ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-keyout', f('ca.key'), '-out', f('ca.pem'), '-subj', '/CN=feedgate e2e test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('key.pem'), '-out', f('leaf.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(f('leaf.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' +
    'keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n');
  await ossl(['x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '1', '-extfile', f('leaf.ext'), '-out', f('leaf.pem')]);
  const ca = await readFile(f('ca.pem'), 'utf8');
  await writeFile(f('chain.pem'), (await readFile(f('leaf.pem'), 'utf8')) + ca);
  const der = new X509Certificate(ca).publicKey.export({ type: 'spki', format: 'der' });
  return { cert: f('chain.pem'), key: f('key.pem'), ca, spki: createHash('sha256').update(der).digest('base64') };
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'feedgate-e2e-tls-'));
  const certs = await makeCertificates(tmp);
  spki = certs.spki;
  const bin = await buildGateway(tmp);
  gw = await new Gateway(bin, { port: await freePort(), tls: certs, allowPrivate: true }).start();
  publisher = await gw.addUser('publisher', { rights: 'all' });
  user = await gw.addUser('reader', { rights: 'subscribe,retrieve' });
  // Topics on a loopback port nobody listens on: the gateway tries no name lookups, and the
  // items come by fat ping.
  const port = await freePort();
  topics = Array.from({ length: STREAMS }, (_, i) => `http://127.0.0.1:${port}/tls-${i}.xml`);
  for (const t of topics) {
    await gw.subscribe(publisher, t);
    await gw.subscribe(user, t);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', `--ignore-certificate-errors-spki-list=${spki}`],
  });
}, { timeout: 300000 });

after(async () => {
  if (browser) await browser.close();
  if (gw) await gw.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const entry = (t, n) => ({ id: `urn:tls:${t}:${n}`, title: `Item ${n}` });

test('eight EventSource streams over TLS and HTTP/2 from one page, each gets every item once', { timeout: 120000 }, async () => {
  // Before: the first items of every topic.
  for (let i = 0; i < STREAMS; i++) {
    for (let n = 0; n < BEFORE; n++) await gw.publish(publisher, topics[i], [entry(i, n)]);
  }

  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e));
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const protocols = new Map();
  cdp.on('Network.responseReceived', e => {
    if (e.type === 'EventSource') protocols.set(e.response.url, e.response.protocol);
  });
  const nav = await page.goto(gw.origin + '/healthz');
  assert.equal(nav.status(), 200, 'the page over TLS (is the test CA trusted?)');
  assert.equal(await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol), 'h2',
    'the page was not loaded over HTTP/2');

  // Eight streams, opened at once; items are published while they connect.
  const auth = Buffer.from(`${user.login}:${user.token}`).toString('base64');
  const urls = topics.map(t => {
    const u = new URL(gw.url);
    for (const [k, v] of Object.entries({ 'hub.mode': 'retrieve', 'hub.topic': t, format: 'json', count: '50', authorization: auth })) {
      u.searchParams.set(k, v);
    }
    return u.toString();
  });
  await page.evaluate(urls => {
    window.got = urls.map(() => []);
    window.opened = urls.map(() => false);
    window.sources = urls.map((u, i) => {
      const es = new EventSource(u);
      es.onopen = () => { window.opened[i] = true; };
      es.addEventListener('notification', ev => {
        for (const it of JSON.parse(ev.data).items) window.got[i].push(it.id);
      });
      return es;
    });
  }, urls);
  for (let n = BEFORE; n < BEFORE + DURING; n++) {
    for (let i = 0; i < STREAMS; i++) await gw.publish(publisher, topics[i], [entry(i, n)]);
  }

  const want = i => Array.from({ length: BEFORE + DURING }, (_, n) => entry(i, n).id).sort();
  try {
    await page.waitForFunction(([streams, total]) =>
      window.got.length === streams && window.got.every(ids => new Set(ids).size >= total),
    [STREAMS, BEFORE + DURING], { timeout: 30000, polling: 50 });
  } catch (e) {
    const got = await page.evaluate(() => ({ got: window.got.map(g => g.length), opened: window.opened }));
    throw new Error(`not every stream got every item within 30 s: items per stream ${JSON.stringify(got.got)}, ` +
      `open ${JSON.stringify(got.opened)}, protocols ${JSON.stringify([...protocols.values()])}\n${e.message}`);
  }
  const state = await page.evaluate(() => ({
    got: window.got,
    ready: window.sources.map(es => es.readyState),
  }));
  for (let i = 0; i < STREAMS; i++) {
    assert.deepEqual([...state.got[i]].sort(), want(i), `stream ${i} did not get every item exactly once`);
  }
  assert.deepEqual(state.ready, Array(STREAMS).fill(1), 'all eight streams open at once');
  assert.equal(protocols.size, STREAMS, `EventSource responses seen: ${protocols.size}`);
  for (const [u, p] of protocols) assert.equal(p, 'h2', `${u} was served over ${p}, not HTTP/2`);
  assert.deepEqual(errors, []);
  await context.close();
});
