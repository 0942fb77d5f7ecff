// undici 8.14 client-h2: a response body buffered while its reader is paused is dropped when the trailers arrive (run: node undici-h2-paused-trailers.mjs from a directory with undici installed).
import http2 from 'node:http2';
import { once } from 'node:events';
import { Client } from 'undici';

const BODY = 32 * 1024;
const server = http2.createServer();
server.on('stream', (stream) => {
  stream.respond({ ':status': 200 }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'x-done': '1' }));
  stream.end(Buffer.alloc(BODY, 'a'));
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const client = new Client(`http://127.0.0.1:${server.address().port}`, { allowH2: true, useH2c: true });
let received = 0;
let trailers = null;
await new Promise((resolve, reject) => {
  client.dispatch(
    { path: '/', method: 'GET' },
    {
      onRequestStart() {},
      onResponseStart(controller) {
        // A slow reader: pause at once, resume a little later.
        controller.pause();
        setTimeout(() => controller.resume(), 200);
        this.controller = controller;
      },
      onResponseData(controller, chunk) {
        received += chunk.length;
      },
      onResponseEnd(controller, t) {
        trailers = t;
        resolve();
      },
      onResponseError(controller, err) {
        reject(err);
      },
    },
  );
});
console.log(
  JSON.stringify({
    undici: (await import('undici/package.json', { with: { type: 'json' } })).default.version,
    node: process.version,
    sent: BODY,
    received,
    trailers,
  }),
);
await client.close();
server.close();
