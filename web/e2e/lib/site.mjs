// A static site on another origin than the gateway's: it serves a page made of the README's
// embedding snippets, and jQuery from node_modules (nothing is fetched from the internet).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

const require = createRequire(import.meta.url);
const readmeFile = resolve(import.meta.dirname, '../../../README.md');
const jqueryFile = require.resolve('jquery/dist/jquery.min.js');

// readmeSnippet returns the two ```html blocks of the README's "Put a live feed on a web page"
// (the widget, then the jQuery plugin) with their example values turned into {{NAME}}s, so the
// page a site builds from them is what the README tells users to paste.
export async function readmeSnippet() {
  const md = await readFile(readmeFile, 'utf8');
  const section = md.split('\n## ').find(s => s.startsWith('Put a live feed on a web page\n'));
  if (!section) throw new Error('README.md has no section "Put a live feed on a web page"');
  const blocks = [...section.matchAll(/^```html\n([\s\S]*?)^```$/gm)].map(m => m[1]);
  if (blocks.length !== 2) throw new Error(`README.md's web page section has ${blocks.length} html blocks, want 2 (widget, jQuery)`);
  const values = (b, topicKey) => {
    const out = b.replaceAll('https://gateway.example', '{{GATEWAY}}')
      .replaceAll("'https://blog.example/feed.xml'", `'{{${topicKey}}}'`)
      .replaceAll("login: 'site'", "login: '{{LOGIN}}'")
      .replaceAll("'THE_READ_ONLY_TOKEN'", "'{{TOKEN}}'")
      .replaceAll('/path/to/jquery-3.7.1.min.js', '{{JQUERY}}');
    const left = out.match(/gateway\.example|blog\.example|THE_READ_ONLY_TOKEN|\/path\/to\//);
    if (left) throw new Error(`README.md snippet: ${left[0]} is not where the test expects it:\n${b}`);
    return out;
  };
  return values(blocks[0], 'TOPIC') + '\n' + values(blocks[1], 'TOPIC_JQ');
}

// fill replaces {{NAME}} in the snippet; values go into JS strings, so they must be plain.
export function fill(snippet, values) {
  return snippet.replace(/\{\{(\w+)\}\}/g, (_, k) => {
    const v = values[k];
    if (v === undefined || /['"<>\\\n]/.test(v)) throw new Error(`snippet value ${k} is missing or not plain: ${v}`);
    return v;
  });
}

export async function startSite(port, values) {
  const snippet = await readmeSnippet();
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
