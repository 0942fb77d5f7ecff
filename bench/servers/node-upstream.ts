// The fallback upstream when nginx is not installed: 100-byte body on every path, 1 MiB on /1m.bin.
//
//   node bench/servers/node-upstream.ts PORT
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const small = Buffer.alloc(100, 'x');
const large = Buffer.alloc(1024 * 1024, 'y');

createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const body = req.url === '/1m.bin' ? large : small;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}).listen(port, '127.0.0.1');
