// Standalone entry: `node test/consul-double/main.ts --listen 127.0.0.1:8500 [--acl-token T]`.
import { parseArgs } from 'node:util';
import { ConsulDouble, type ConsulDoubleOptions } from './consul-double.ts';

const USAGE = `usage: consul-double [--listen HOST:PORT] [--acl-token TOKEN ...] [--acl-read-token TOKEN ...]
                     [--acl-default-policy allow|deny] [--datacenter DC] [--node NAME]
  Runs the Consul agent API double until SIGINT/SIGTERM. Default listen 127.0.0.1:8500.
  Switches: PUT /_double/down?seconds=5, /_double/slow?ms=200, /_double/fail?status=500,
            /_double/reset-index, /_double/restart, /_double/instances (JSON body), GET /_double/state`;

function main(): void {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string', default: '127.0.0.1:8500' },
      'acl-token': { type: 'string', multiple: true },
      'acl-read-token': { type: 'string', multiple: true },
      'acl-default-policy': { type: 'string' },
      datacenter: { type: 'string' },
      node: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const listen = values.listen ?? '127.0.0.1:8500';
  const i = listen.lastIndexOf(':');
  const host = i < 0 ? '127.0.0.1' : listen.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(i < 0 ? listen : listen.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`invalid --listen ${listen}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const options: ConsulDoubleOptions = {};
  if (values.datacenter !== undefined) options.datacenter = values.datacenter;
  if (values.node !== undefined) options.nodeName = values.node;
  const write = values['acl-token'] ?? [];
  const read = values['acl-read-token'] ?? [];
  if (write.length > 0 || read.length > 0 || values['acl-default-policy'] !== undefined) {
    const tokens: Record<string, 'read' | 'write'> = {};
    for (const t of read) tokens[t] = 'read';
    for (const t of write) tokens[t] = 'write';
    options.acl = { defaultPolicy: values['acl-default-policy'] === 'allow' ? 'allow' : 'deny', tokens };
  }
  const double = new ConsulDouble(options);
  double.start({ host: host === '' ? '127.0.0.1' : host, port }).then(
    (addr) => {
      process.stdout.write(`consul-double listening on http://${addr.address}:${addr.port}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`consul-double: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
  const shutdown = (): void => {
    void double.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main();
