// The node-http-proxy anchor: one process, a keep-alive agent to the upstream, nothing else.
//
//   node bench/servers/http-proxy.ts LISTEN_PORT UPSTREAM_PORT
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const port = Number(process.argv[2]);
const upstream = Number(process.argv[3]);
const agent = new Agent({ keepAlive: true, maxSockets: 128 });
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${upstream}`, agent });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});

createServer({ keepAliveTimeout: 60_000 }, (req, res) => proxy.web(req, res)).listen(port, '127.0.0.1');
