// The bare-Node anchor: node:http in, undici's Pool out, headers and body passed through, nothing else.
// It is the floor a Node proxy stands on; meshlet's distance from it is the cost of its policies.
//
//   node bench/servers/undici-proxy.ts LISTEN_PORT UPSTREAM_PORT
import { createServer } from 'node:http';
import { Pool } from 'undici';

const port = Number(process.argv[2]);
const upstream = Number(process.argv[3]);
const pool = new Pool(`http://127.0.0.1:${upstream}`, { connections: 128, pipelining: 1 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te']);

createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
  pool.stream(
    {
      path: req.url ?? '/',
      method: (req.method ?? 'GET') as 'GET',
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
    },
    ({ statusCode, headers: h }) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP.has(k)) out[k] = v;
      res.writeHead(statusCode, out);
      return res;
    },
    (err) => {
      if (err === null) return;
      if (!res.headersSent) res.writeHead(502);
      res.end();
    },
  );
}).listen(port, '127.0.0.1');
