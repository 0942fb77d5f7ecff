// registry.check.grpc: the local app's grpc.health.v1 status drives the Consul TTL check and /ready; grpc-js loads only for it.
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GrpcHealthProbe } from '../../src/registry/consul/grpc-health-probe.ts';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { grpc } from '../helpers/grpc.ts';
import {
  type InProcessMeshlet,
  type MeshletProcess,
  spawnMeshlet,
  startMeshlet,
  writeConfig,
} from '../helpers/meshlet.ts';
import { adminGet, consulRegistry, within } from './consul-helpers.ts';

const INTERVAL = 500;
/** What one tick may take beyond the interval: the Check call and the check update to the double. */
const SLACK = 150;
const NAMED = 'meshlet.test.v1.Echo';

interface HealthApp {
  port: number;
  health: HealthImplementation;
  stop(): void;
}

/** A real grpc-js server serving only grpc.health.v1.Health (grpc-health-check's implementation). */
async function startHealthApp(statuses: Record<string, ServingStatus>, port = 0): Promise<HealthApp> {
  const server = new grpc.Server();
  const health = new HealthImplementation(statuses);
  health.addToServer(server);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    ),
  );
  return { port: bound, health, stop: () => server.forceShutdown() };
}

type Ready = { checks: Record<string, { ok: boolean; detail: string }> };

describe.each([
  ['""', ''],
  [`"${NAMED}"`, NAMED],
])('registry.check.grpc: %s', (_label, service) => {
  let double: ConsulDouble;
  let app: HealthApp;
  let mesh: InProcessMeshlet;
  const id = `greeter-${service === '' ? 'whole' : 'named'}`;
  const check = () => double.checks(id)[0];
  const target = () => (service === '' ? `127.0.0.1:${app.port}` : `127.0.0.1:${app.port}/${service}`);

  beforeAll(async () => {
    double = new ConsulDouble();
    await double.start();
    // The other name is NOT_SERVING throughout: the probe must ask about its own service only.
    app = await startHealthApp({ [service]: 'SERVING', [service === '' ? NAMED : '']: 'NOT_SERVING' });
    mesh = await startMeshlet({
      service: { name: 'greeter', port: app.port, address: '127.0.0.1', protocol: 'grpc' },
      registry: consulRegistry(double, {
        serviceId: id,
        check: { grpc: service, interval: INTERVAL, timeout: 200 },
      }),
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    await double.waitFor(
      (d) => d.checks(id)[0]?.status === 'passing' && d.checks(id)[0]?.output !== '',
      3000,
      'registered, passing, with the probe output',
    );
  });
  afterAll(async () => {
    await mesh?.close();
    await double?.stop();
    app?.stop();
  });

  it('registers a TTL check named after the gRPC probe, passing with SERVING in its output; /ready is 200', async () => {
    expect(check()).toMatchObject({
      type: 'ttl',
      status: 'passing',
      output: `gRPC Health/Check ${target()}: SERVING`,
    });
    expect(check()!.name).toBe(
      `meshlet: gRPC Health/Check ${service === '' ? '(whole server)' : `"${service}"`} on the local app`,
    );
    const ready = await adminGet<Ready>(mesh.admin, '/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.checks.app).toEqual({
      ok: true,
      detail: `passing: gRPC Health/Check ${target()}: SERVING`,
    });
  });

  it('NOT_SERVING turns the TTL check critical within one interval, SERVING passing again; /ready follows', async () => {
    app.health.setStatus(service, 'NOT_SERVING');
    const tookCritical = await within(INTERVAL + SLACK, () => check()?.status === 'critical', 'critical');
    expect(tookCritical).toBeLessThanOrEqual(INTERVAL + SLACK);
    expect(check()!.output).toBe(`gRPC Health/Check ${target()}: NOT_SERVING`);
    const notReady = await adminGet<Ready>(mesh.admin, '/ready');
    expect(notReady.status).toBe(503);
    expect(notReady.body.checks.app).toEqual({
      ok: false,
      detail: `critical: gRPC Health/Check ${target()}: NOT_SERVING`,
    });

    app.health.setStatus(service, 'SERVING');
    const tookPassing = await within(INTERVAL + SLACK, () => check()?.status === 'passing', 'passing again');
    expect(tookPassing).toBeLessThanOrEqual(INTERVAL + SLACK);
    expect((await adminGet(mesh.admin, '/ready')).status).toBe(200);
  });

  it('the app stopped → critical with ECONNREFUSED in the output; the app back on its port → passing', async () => {
    const { port } = app;
    app.stop();
    await within(2 * INTERVAL, () => check()?.status === 'critical', 'critical');
    expect(check()!.output).toMatch(
      new RegExp(`^gRPC Health/Check ${target()}: UNAVAILABLE: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}`),
    );
    expect((await adminGet(mesh.admin, '/ready')).status).toBe(503);
    app = await startHealthApp({ [service]: 'SERVING' }, port);
    await within(2 * INTERVAL + SLACK, () => check()?.status === 'passing', 'passing after restart');
    expect((await adminGet(mesh.admin, '/ready')).status).toBe(200);
  });
});

/** A TCP relay in front of a port, counting the connections it carried and those still open. */
async function startRelay(
  to: number,
): Promise<{ port: number; opened: number; open: Set<Socket>; close(): void }> {
  const open = new Set<Socket>();
  const relay = {
    port: 0,
    opened: 0,
    open,
    close: () => {
      for (const s of open) s.destroy();
      server.close();
    },
  };
  const server: Server = createServer((client) => {
    relay.opened++;
    open.add(client);
    const upstream = new (Object.getPrototypeOf(client).constructor as typeof Socket)();
    upstream.connect(to, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    const done = () => {
      open.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  relay.port = (server.address() as { port: number }).port;
  return relay;
}

describe('GrpcHealthProbe', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const f of cleanup.splice(0)) f();
  });

  it('reuses one channel across probes and closes it on close()', async () => {
    const app = await startHealthApp({ '': 'SERVING' });
    const relay = await startRelay(app.port);
    cleanup.push(
      () => app.stop(),
      () => relay.close(),
    );
    const probe = new GrpcHealthProbe({ port: relay.port, service: '', timeoutMs: 500, intervalMs: 1000 });
    for (let i = 0; i < 5; i++) expect((await probe.probe()).status).toBe('passing');
    expect(relay.opened).toBe(1);
    probe.close();
    await within(1000, () => relay.open.size === 0, 'channel closed');
    expect(await probe.probe()).toEqual({
      status: 'critical',
      output: `gRPC Health/Check 127.0.0.1:${relay.port}: probe stopped`,
    });
    expect(relay.opened).toBe(1);
  });

  it('a service the app does not know is critical with NOT_FOUND; a hanging app times out at the deadline', async () => {
    const app = await startHealthApp({ '': 'SERVING' });
    cleanup.push(() => app.stop());
    const unknown = new GrpcHealthProbe({
      port: app.port,
      service: 'no.such.Service',
      timeoutMs: 500,
      intervalMs: 1000,
    });
    cleanup.push(() => unknown.close());
    expect(await unknown.probe()).toEqual({
      status: 'critical',
      output: `gRPC Health/Check 127.0.0.1:${app.port}/no.such.Service: NOT_FOUND: Health status unknown for service no.such.Service`,
    });

    // Accepts TCP and never answers the HTTP/2 preface.
    const sockets = new Set<Socket>();
    const silent = createServer((s) => sockets.add(s.on('error', () => {})));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => {
      for (const s of sockets) s.destroy();
      silent.close();
    });
    const port = (silent.address() as { port: number }).port;
    const hanging = new GrpcHealthProbe({ port, service: '', timeoutMs: 200, intervalMs: 1000 });
    cleanup.push(() => hanging.close());
    const started = performance.now();
    expect(await hanging.probe()).toEqual({
      status: 'critical',
      output: `gRPC Health/Check 127.0.0.1:${port}: DEADLINE_EXCEEDED: timed out after 200 ms`,
    });
    expect(performance.now() - started).toBeLessThan(400);
  });
});

describe('grpc-js is loaded only for a gRPC check', () => {
  const RECORD_MODULES = fileURLToPath(new URL('../helpers/record-modules.ts', import.meta.url));
  let double: ConsulDouble;
  let app: HealthApp;
  let mesh: MeshletProcess | undefined;

  beforeAll(async () => {
    double = new ConsulDouble();
    await double.start();
    app = await startHealthApp({ '': 'SERVING' });
  });
  afterAll(async () => {
    await double?.stop();
    app?.stop();
  });
  afterEach(async () => {
    mesh?.proc.kill('SIGTERM');
    await mesh?.exited;
    mesh = undefined;
  });

  /** Runs `meshlet run` with this check until Consul has its first result; the module URLs its daemon loaded. */
  async function modulesWith(check: Record<string, unknown>, id: string): Promise<string> {
    // The test calls this twice: the first meshlet is stopped here, afterEach stops the last one.
    if (mesh !== undefined) {
      mesh.proc.kill('SIGTERM');
      await mesh.exited;
    }
    const log = writeConfig('', 'modules.log');
    process.env.MESHLET_TEST_MODULE_LOG = log;
    process.env.NODE_OPTIONS = `--import ${RECORD_MODULES}`;
    try {
      mesh = await spawnMeshlet({
        service: { name: 'greeter', port: app.port, address: '127.0.0.1' },
        // The gRPC admin API loads grpc-js too: off, so only the check can.
        listeners: { adminGrpc: { enabled: false } },
        registry: consulRegistry(double, {
          serviceId: id,
          check: { interval: INTERVAL, timeout: 200, ...check },
        }),
        shutdown: { drainDelay: 0 },
      });
    } finally {
      delete process.env.NODE_OPTIONS;
      delete process.env.MESHLET_TEST_MODULE_LOG;
    }
    await double.waitFor(
      (d) => d.checks(id)[0]?.status === 'passing' && d.checks(id)[0]?.output !== '',
      5000,
      `${id} passing, with the probe output`,
    );
    return readFileSync(log, 'utf8');
  }

  it('a TCP check leaves @grpc/grpc-js and grpc-health-check unloaded; a gRPC check loads them', async () => {
    const tcp = await modulesWith({}, 'greeter-tcp');
    expect(tcp).toMatch(/registry\/consul\/app-registration\.(ts|js)\n/); // the recorder saw the daemon's imports
    expect(tcp).not.toMatch(/node_modules\/(@grpc\/grpc-js|grpc-health-check)\//);
    expect(double.checks('greeter-tcp')[0]!.output).toMatch(/^TCP connect/);

    const grpcCheck = await modulesWith({ grpc: '' }, 'greeter-grpc');
    expect(grpcCheck).toMatch(/node_modules\/@grpc\/grpc-js\//);
    expect(grpcCheck).toMatch(/node_modules\/grpc-health-check\//);
    expect(double.checks('greeter-grpc')[0]!.output).toBe(`gRPC Health/Check 127.0.0.1:${app.port}: SERVING`);
  });
});
