// Quickstart: starts two instances of a demo "hello" service and meshlet in front of them.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

for (const port of [9001, 9002]) {
  createServer((req, res) => {
    const body = JSON.stringify({
      service: 'hello',
      instance: `127.0.0.1:${port}`,
      method: req.method,
      path: req.url,
      requestId: req.headers['x-request-id'],
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`${body}\n`);
  }).listen(port, '127.0.0.1');
}

const meshlet = spawn(
  process.execPath,
  [here('../bin/meshlet.js'), 'run', '--config', here('./quickstart.yaml')],
  {
    stdio: 'inherit',
  },
);
process.stderr.write(
  "\nquickstart: demo 'hello' on 127.0.0.1:9001 and :9002; meshlet outbound 127.0.0.1:15001, admin 127.0.0.1:15000\n" +
    "quickstart: try   curl -H 'Host: hello' http://127.0.0.1:15001/   (Ctrl-C stops everything)\n\n",
);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => meshlet.kill('SIGTERM'));
meshlet.on('exit', (code) => process.exit(code ?? 0));
