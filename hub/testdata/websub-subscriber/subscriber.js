// Runs the pubsubhubbub package's WebSub subscriber on a loopback port and
// reports, one JSON object per line on stdout, what it sees: the port it
// listens on, every answer it gives, the verifications it confirms and the
// content deliveries whose signature it accepted ("feed" events).
//
// Environment: WEBSUB_SECRET, the secret the subscriber checks
// X-Hub-Signature with.
'use strict';

const http = require('http');
const pubsubhubbub = require('pubsubhubbub');

const secret = process.env.WEBSUB_SECRET || '';
const subscriber = pubsubhubbub.createServer({ secret: secret || false });
const handle = subscriber.listener();

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');

subscriber.on('subscribe', (d) => say({ event: 'subscribe', topic: d.topic, lease: d.lease }));
subscriber.on('unsubscribe', (d) => say({ event: 'unsubscribe', topic: d.topic }));
subscriber.on('feed', (d) => say({
  event: 'feed',
  topic: d.topic,
  path: new URL(d.callback).pathname,
  contentType: d.headers['content-type'] || '',
  body: d.feed.toString('base64'),
}));

const server = http.createServer((req, res) => {
  const writeHead = res.writeHead;
  res.writeHead = function (code, ...rest) {
    say({ event: 'response', method: req.method, path: req.url.split('?')[0], status: code });
    return writeHead.call(this, code, ...rest);
  };
  handle(req, res);
});
server.listen(0, '127.0.0.1', () => say({ event: 'listening', port: server.address().port }));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
