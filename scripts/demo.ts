// `npm run demo`: deploy/compose's topology as processes on 127.0.0.1 — the Consul double, three apps under meshlet, Prometheus when installed.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { ConsulDouble } from '../test/consul-double/consul-double.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');
const APP = join(ROOT, 'deploy/compose/demo-app/app.js');

/** The compose file's services: role, knobs, what it calls. */
const SERVICES = [
  { name: 'user-service', env: { DELAY_MS: '15', ERROR_RATE: '0.02' } },
  { name: 'question-service', env: { DELAY_MS: '40', ERROR_RATE: '0.05' } },
  { name: 'api-gateway', env: { CALLS: 'user-service,question-service' } },
];

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

function hasPrometheus(): boolean {
  try {
    execFileSync('prometheus', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'meshlet-demo-'));
const consul = new ConsulDouble();
let stopping = false;

async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const t = setTimeout(() => {
              c.kill('SIGKILL');
            }, 10_000);
            c.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
    await consul.stop();
    rmSync(dir, { recursive: true, force: true });
    console.log('demo stopped: every process ended');
  }
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

await consul.start({ host: '127.0.0.1', port: Number(process.env.DEMO_CONSUL_PORT ?? 0) });
const admins: Record<string, string> = {};
let gatewayUrl = '';
for (const svc of SERVICES) {
  // deploy/compose's meshlet config, with loopback addresses and free ports.
  const config = parse(readFileSync(join(ROOT, `deploy/compose/meshlet/${svc.name}.yaml`), 'utf8')) as Record<
    string,
    Record<string, unknown>
  >;
  const appPort = await freePort();
  const admin = await freePort();
  config.service = { ...config.service, port: appPort, address: '127.0.0.1' };
  config.listeners = {
    outbound: { address: '127.0.0.1', port: await freePort() },
    admin: { address: '127.0.0.1', port: admin },
    inbound: { address: '127.0.0.1', port: await freePort() },
    adminGrpc: { enabled: false },
  };
  config.registry = {
    ...config.registry,
    consul: { address: consul.url },
    check: { http: '/health', interval: '1s', timeout: '500ms' },
    sidecarProxy: {
      upstreamPorts: { from: 21300 + SERVICES.indexOf(svc) * 50, to: 21349 + SERVICES.indexOf(svc) * 50 },
    },
  };
  config.shutdown = { drainDelay: '0s' };
  config.accessLog = { enabled: false };
  const file = join(dir, `${svc.name}.yaml`);
  writeFileSync(file, stringify(config));
  // The app runs under meshlet (meshlet run -- CMD), which hands it MESHLET_OUTBOUND.
  const child = spawn(process.execPath, [CLI, 'run', '--config', file, '--', process.execPath, APP], {
    env: { ...process.env, ROLE: svc.name, PORT: String(appPort), HOST: '127.0.0.1', ...svc.env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  child.once('exit', (code) => {
    if (!stopping) {
      console.error(`${svc.name}'s meshlet exited (${code}); stopping the demo`);
      void stop(1);
    }
  });
  admins[svc.name] = `http://127.0.0.1:${admin}`;
  if (svc.name === 'api-gateway') gatewayUrl = `http://127.0.0.1:${appPort}/`;
}

// Ready when the gateway answers through both backends.
const started = Date.now();
for (;;) {
  const ok = await fetch(gatewayUrl).then(
    async (r) =>
      ((await r.json()) as { results: { status?: number }[] }).results.every((x) => x.status === 200),
    () => false,
  );
  if (ok) break;
  if (Date.now() - started > 30_000) {
    console.error('demo: the gateway did not answer within 30 s');
    await stop(1);
  }
  await new Promise((r) => setTimeout(r, 200));
}

let promUrl = 'not started (install Debian\'s "prometheus" package for it)';
if (hasPrometheus()) {
  const port = await freePort();
  const targets = Object.entries(admins).map(
    ([service, url]) => `      - targets: ["${url.slice(7)}"]\n        labels: { service: ${service} }`,
  );
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global: { scrape_interval: 2s }\nscrape_configs:\n  - job_name: meshlet\n    static_configs:\n${targets.join('\n')}\n`,
  );
  children.push(
    spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'prometheus-data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: 'ignore' },
    ),
  );
  promUrl = `http://127.0.0.1:${port}`;
}

// A little steady traffic, as the compose file's `traffic` service sends.
setInterval(() => {
  fetch(gatewayUrl).then(
    (r) => r.body?.cancel(),
    () => {},
  );
}, 200).unref();

console.log(
  JSON.stringify({
    msg: 'demo ready',
    gateway: gatewayUrl,
    consul: `${consul.url} (the Consul double: /v1/catalog/services, /v1/health/connect/user-service)`,
    prometheus: promUrl,
    metrics: Object.fromEntries(Object.entries(admins).map(([k, v]) => [k, `${v}/metrics`])),
    pids: children.map((c) => c.pid),
    stop: 'Ctrl-C',
  }),
);
