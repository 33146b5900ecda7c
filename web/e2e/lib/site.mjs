// A static site on another origin than the gateway's: it serves a page made of the README's
// embedding snippet, and jQuery from node_modules (nothing is fetched from the internet).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

const require = createRequire(import.meta.url);
const snippetFile = resolve(import.meta.dirname, '../snippet.html');
const jqueryFile = require.resolve('jquery/dist/jquery.min.js');

// fill replaces {{NAME}} in the snippet; values go into JS strings, so they must be plain.
export function fill(snippet, values) {
  return snippet.replace(/\{\{(\w+)\}\}/g, (_, k) => {
    const v = values[k];
    if (v === undefined || /['"<>\\\n]/.test(v)) throw new Error(`snippet value ${k} is missing or not plain: ${v}`);
    return v;
  });
}

export async function startSite(port, values) {
  const snippet = await readFile(snippetFile, 'utf8');
  const jquery = await readFile(jqueryFile);
  const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Another site</title></head>
<body>
<h1>Another site embedding feedgate</h1>
${fill(snippet, { ...values, JQUERY: '/jquery.js' })}
<div id="extra"></div>
</body></html>`;
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/' || path === '/embed.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      return res.end(page);
    }
    if (path === '/blank.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      return res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>blank</title>
<script src="${values.GATEWAY}/feedgate.js"></script></head><body><div id="feed"></div></body></html>`);
    }
    if (path === '/jquery.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      return res.end(jquery);
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  });
  await new Promise((ok, fail) => server.listen(port, '127.0.0.1', ok).once('error', fail));
  return { server, origin: `http://127.0.0.1:${port}`, close: () => new Promise(ok => server.close(ok)) };
}
