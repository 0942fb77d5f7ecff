// The demo's one-file app: answers as its role, with error and latency knobs, and (api-gateway) calls its upstreams through meshlet.
import { createServer, request } from 'node:http';

const role = process.env.ROLE ?? 'app';
const port = Number(process.env.PORT ?? 8080);
const errorRate = Number(process.env.ERROR_RATE ?? 0); // share of 500s, 0..1
const delayMs = Number(process.env.DELAY_MS ?? 0); // added latency, ms
const outbound = process.env.MESHLET_OUTBOUND ?? 'http://127.0.0.1:15001'; // meshlet's outbound listener
const calls = (process.env.CALLS ?? '').split(',').filter(Boolean); // upstream names to call per request

// node:http, not fetch: fetch does not let a caller set Host, which names the upstream to meshlet.
function call(name) {
  return new Promise((resolve, reject) => {
    const req = request(`${outbound}/`, { headers: { host: name } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ upstream: name, status: res.statusCode, body: body.slice(0, 200) }));
    });
    req.on('error', reject);
    req.end();
  });
}

createServer(async (req, res) => {
  if (req.url === '/health') return res.end('ok');
  await new Promise((r) => setTimeout(r, delayMs));
  const results = await Promise.all(
    calls.map((c) => call(c).catch((e) => ({ upstream: c, error: String(e) }))),
  );
  const failed = Math.random() < errorRate || results.some((r) => r.status === undefined || r.status >= 500);
  res.writeHead(failed ? 500 : 200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ role, results }));
}).listen(port, process.env.HOST ?? '127.0.0.1');
