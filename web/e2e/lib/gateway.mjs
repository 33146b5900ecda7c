// A real feedgate gateway for the browser tests: built from this repository, run on a free
// loopback port with a temporary embedded store, and driven over HTTP like any client.
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const repoRoot = resolve(import.meta.dirname, '../../..');

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

// The environment of the gateway: the test's own, less any FEEDGATE_* setting.
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FEEDGATE_')) env[k] = v;
  return env;
}

export async function buildGateway(dir) {
  if (process.env.FEEDGATE_E2E_BINARY) return process.env.FEEDGATE_E2E_BINARY;
  const bin = join(dir, 'gateway');
  await run('go', ['build', '-o', bin, './cmd/gateway'], { cwd: repoRoot, maxBuffer: 1 << 24 });
  return bin;
}

// fetchTrusting is a minimal fetch over HTTPS (HTTP/1.1) that trusts the PEM certificate ca.
function fetchTrusting(ca) {
  return (url, { method = 'GET', headers = {}, body } = {}) => new Promise((ok, fail) => {
    const req = httpsRequest(url, { method, headers, ca }, res => {
      const chunks = [];
      res.on('data', c => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        ok({ status: res.statusCode, ok: res.statusCode < 300, text: async () => text });
      });
      res.on('error', fail);
    });
    req.on('error', fail);
    if (body) req.write(body);
    req.end();
  });
}

export class Gateway {
  // tls: {cert, key, ca}: serve HTTPS (--tls-cert, --tls-key) from the PEM files cert and key,
  // and trust ca (PEM text, the issuing CA) when calling the gateway. allowPrivate lets topics
  // live on loopback addresses (--allow-private). args are more `serve` flags; with adminPort the
  // gateway serves its admin listener (the admin API and console) on it; env adds to the
  // gateway's environment (FEEDGATE_JWT_SECRET...).
  constructor(bin, { port, origins = [], tls, allowPrivate = false, args = [], adminPort, env = {} }) {
    this.bin = bin;
    this.port = port;
    this.origins = origins;
    this.tls = tls;
    this.allowPrivate = allowPrivate;
    this.args = args;
    this.env = env;
    if (adminPort) {
      this.adminPort = adminPort;
      this.adminOrigin = `http://127.0.0.1:${adminPort}`;
    }
    const scheme = tls ? 'https' : 'http';
    this.url = `${scheme}://127.0.0.1:${port}/`;
    this.origin = `${scheme}://127.0.0.1:${port}`;
    this.fetch = tls ? fetchTrusting(tls.ca) : fetch;
    this.log = '';
  }

  async start() {
    if (!this.dataDir) this.dataDir = await mkdtemp(join(tmpdir(), 'feedgate-e2e-'));
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir,
      '--public-url', this.origin];
    if (this.origins.length) args.push('--allowed-origins', this.origins.join(','));
    if (this.tls) args.push('--tls-cert', this.tls.cert, '--tls-key', this.tls.key);
    if (this.allowPrivate) args.push('--allow-private');
    if (this.adminPort) args.push('--admin-listen', `127.0.0.1:${this.adminPort}`);
    args.push(...this.args);
    const proc = this.proc = spawn(this.bin, args, { env: { ...cleanEnv(), ...this.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = d => { this.log = (this.log + d).slice(-20000); };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    this.exited = new Promise(ok => proc.once('exit', (code, sig) => ok({ code, sig })));
    const deadline = Date.now() + 20000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`the gateway exited (${proc.exitCode}) at start:\n${this.log}`);
      try {
        const r = await this.fetch(this.origin + '/healthz');
        if (r.ok) return this;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) throw new Error(`the gateway did not answer /healthz within 20 s:\n${this.log}`);
      await sleep(100);
    }
  }

  // stop ends the gateway with signal and waits for it; SIGKILL after 10 s.
  async stop(signal = 'SIGTERM') {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill(signal);
    const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(t);
  }

  // restart ends the gateway with signal (SIGTERM: a graceful shutdown, SIGKILL: a crash) and
  // starts it again on the same port and data dir.
  async restart(signal = 'SIGTERM') {
    await this.stop(signal);
    return this.start();
  }

  async cleanup() {
    await this.stop();
    if (this.dataDir) await rm(this.dataDir, { recursive: true, force: true });
  }

  // addUser runs `gateway user add` against the running gateway and returns login:token.
  async addUser(login, { rights, topics } = {}) {
    const args = ['user', 'add', login, '--data-dir', this.dataDir];
    if (rights) args.push('--rights', rights);
    if (topics) args.push('--topics', [].concat(topics).join(','));
    const { stdout } = await run(this.bin, args, { env: cleanEnv() });
    const token = stdout.trim().split('\n').pop().trim();
    if (!token) throw new Error(`gateway user add ${login} printed no token`);
    return { login, token, basic: 'Basic ' + Buffer.from(`${login}:${token}`).toString('base64') };
  }

  // mint runs `gateway token mint` with the gateway's environment (its --jwt-secret) and returns
  // the signed token.
  async mint({ sub, rights, topics, ttl = '10m' }) {
    const args = ['token', 'mint', '--sub', sub, '--rights', rights, '--ttl', ttl];
    if (topics) args.push('--topics', [].concat(topics).join(','));
    const { stdout } = await run(this.bin, args, { env: { ...cleanEnv(), ...this.env } });
    const jwt = stdout.trim().split('\n').pop().trim();
    if (!jwt) throw new Error('gateway token mint printed no token');
    return jwt;
  }

  async call(user, params, { method = 'GET', body, type } = {}) {
    const u = new URL(this.url);
    const headers = { Authorization: user.basic, Accept: 'application/json' };
    if (method === 'POST' && !body) {
      body = new URLSearchParams(params).toString();
      type = 'application/x-www-form-urlencoded';
    } else {
      for (const [k, v] of Object.entries(params)) u.searchParams.append(k, v);
    }
    if (type) headers['Content-Type'] = type;
    const r = await this.fetch(u, { method, headers, body });
    const text = await r.text();
    return { status: r.status, text, json: () => JSON.parse(text) };
  }

  async subscribe(user, topic) {
    const r = await this.call(user, { 'hub.mode': 'subscribe', 'hub.topic': topic }, { method: 'POST' });
    if (r.status !== 204) throw new Error(`subscribe ${topic} as ${user.login}: ${r.status} ${r.text}`);
  }

  // publish fat-pings topic with an Atom feed of entries and returns {stored, cursor}.
  async publish(user, topic, entries) {
    const r = await this.call(user, { 'hub.mode': 'publish', 'hub.topic': topic },
      { method: 'POST', body: atom(topic, entries), type: 'application/atom+xml' });
    if (r.status !== 200) throw new Error(`fat ping of ${topic}: ${r.status} ${r.text}`);
    return r.json();
  }
}

const esc = s => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

// atom renders entries ({id, title, summary, link}), given oldest first, as an Atom feed listing
// them newest first, as feeds do, each a second newer than the one before.
export function atom(topic, entries) {
  const now = Date.now();
  const at = i => new Date(now - (entries.length - 1 - i) * 1000).toISOString();
  const items = entries.map((e, i) => `<entry><id>${esc(e.id)}</id><title type="text">${esc(e.title)}</title><updated>${at(i)}</updated>
<link rel="alternate" href="${esc(e.link || 'https://blog.example/' + encodeURIComponent(e.id))}"/>
<summary type="html">${esc(e.summary || '')}</summary></entry>`).reverse();
  return `<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>E2E ${esc(topic)}</title><id>${esc(topic)}</id><updated>${at(entries.length - 1)}</updated>
${items.join('\n')}
</feed>`;
}

export const sleep = ms => new Promise(ok => setTimeout(ok, ms));
