// SIGTERM turns the instance critical in Consul before meshlet stops accepting; Consul down keeps routing.
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, spawnMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, consulRegistry, metric, via, within } from './consul-helpers.ts';

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

type Ready = { checks: Record<string, { ok: boolean; detail: string }> };

describe('SIGTERM with Consul', () => {
  let double: ConsulDouble;
  let app: TestUpstream;

  beforeAll(async () => {
    double = new ConsulDouble();
    await double.start();
    app = await startUpstream();
  });
  afterAll(async () => {
    await double?.stop();
    await app?.close();
  });

  it('the instance is critical in Consul before meshlet stops accepting, then deregistered; exit 0', async () => {
    const tokenFile = join(tempDir('meshlet-token-'), 'consul-token');
    writeFileSync(tokenFile, 'file-token-abc\n');
    const mesh = await spawnMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: consulRegistry(double, {
        consul: { tokenFile },
        serviceId: 'web-spawned',
        check: { interval: '1s', timeout: '300ms' },
      }),
      shutdown: { drainDelay: '1s' },
    });
    await double.waitFor((d) => d.checks('web-spawned')[0]?.status === 'passing', 5000, 'registered');
    expect(double.seenTokens).toContain('file-token-abc');
    const port = Number(new URL(mesh.outbound).port);
    const t0 = performance.now();
    mesh.proc.kill('SIGTERM');
    let criticalAt = Number.NaN;
    let refusedAt = Number.NaN;
    while (performance.now() - t0 < 5000 && Number.isNaN(refusedAt)) {
      const check = double.checks('web-spawned')[0];
      if (Number.isNaN(criticalAt) && (check === undefined || check.status === 'critical')) {
        criticalAt = performance.now() - t0;
      }
      if (!(await canConnect(port))) refusedAt = performance.now() - t0;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(criticalAt).toBeLessThan(refusedAt);
    expect(refusedAt).toBeGreaterThanOrEqual(900); // the drain delay
    expect(await mesh.exited).toBe(0);
    expect(double.instances('web')).toHaveLength(0);
    expect(mesh.stdout.join('\n')).not.toContain('file-token-abc');
  });
});

describe('Consul unreachable', () => {
  let double: ConsulDouble;
  let a: TestUpstream;
  let b: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    double = new ConsulDouble();
    await double.start();
    [a, b] = await Promise.all([startUpstream(), startUpstream()]);
    double.addInstance({ service: 'users', id: 'users-a', port: a.port });
    mesh = await startMeshlet({
      registry: consulRegistry(double),
      upstreams: { users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    await within(3000, async () => (await adminGet(mesh.admin, '/ready')).status === 200, 'synced');
  });
  afterAll(async () => {
    await mesh?.close();
    await double?.stop();
    await Promise.all([a?.close(), b?.close()]);
  });

  it('Consul down → requests succeed on the last endpoints, /ready and the metric say so; back → watches resume', async () => {
    expect(await metric(mesh.admin, 'meshlet_registry_consul_up')).toBe(1);
    await double.setDown(true);
    await within(2000, async () => (await metric(mesh.admin, 'meshlet_registry_consul_up')) === 0, 'up = 0');
    for (let i = 0; i < 5; i++) expect(await via(mesh.outbound, 'users')).toBe(String(a.port));
    const ready = await adminGet<Ready>(mesh.admin, '/ready');
    expect(ready.status).toBe(200); // still serving on the last known endpoints
    expect(ready.body.checks.consul?.detail).toMatch(/unreachable .*routing on the last known endpoints/);
    expect(
      await metric(mesh.admin, 'meshlet_registry_consul_errors_total{operation="watch"}'),
    ).toBeGreaterThan(0);

    double.addInstance({ service: 'users', id: 'users-b', port: b.port });
    await double.setDown(false);
    // Backoff is capped at 5 s; then the watch answers at once with the new state.
    const seen = new Set<string>();
    await within(
      8000,
      async () => {
        seen.add(await via(mesh.outbound, 'users'));
        return seen.has(String(b.port));
      },
      'watch resumed',
    );
    expect(await metric(mesh.admin, 'meshlet_registry_consul_up')).toBe(1);
    expect((await adminGet<Ready>(mesh.admin, '/ready')).body.checks.consul?.detail).toBe('reachable');
  });
});

describe('started while Consul is down', () => {
  it('/ready is 503 until the first sync, then 200', async () => {
    const port = await closedPort();
    const up = await startUpstream();
    const double = new ConsulDouble();
    const mesh = await startMeshlet({
      registry: { type: 'consul', consul: { address: `http://127.0.0.1:${port}` } },
      upstreams: { users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const before = await adminGet<Ready>(mesh.admin, '/ready');
      expect(before.status).toBe(503);
      expect(before.body.checks.registry?.ok).toBe(false);
      expect(before.body.checks.consul?.detail).toMatch(/not reached yet/);
      await double.start({ port });
      double.addInstance({ service: 'users', id: 'users-1', port: up.port });
      await within(
        8000,
        async () => (await adminGet(mesh.admin, '/ready')).status === 200,
        'ready after sync',
      );
      expect(await via(mesh.outbound, 'users')).toBe(String(up.port));
    } finally {
      await mesh.close();
      await double.stop();
      await up.close();
    }
  });
});

describe('on-demand watches', () => {
  it('are capped, and stopped when idle', async () => {
    const double = new ConsulDouble();
    await double.start();
    const up = await startUpstream();
    double.addInstance({ service: 'orders', id: 'orders-1', port: up.port });
    double.addInstance({ service: 'billing', id: 'billing-1', port: up.port });
    const mesh = await startMeshlet({
      registry: consulRegistry(double, { watch: { idleTimeout: '400ms', maxOnDemand: 1 } }),
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    try {
      await within(3000, async () => (await adminGet(mesh.admin, '/ready')).status === 200, 'synced');
      await within(1000, async () => (await via(mesh.outbound, 'orders')) === String(up.port), 'orders');
      expect(await via(mesh.outbound, 'billing')).toBe('status 404'); // over the cap
      expect(await metric(mesh.admin, 'meshlet_registry_consul_watches{kind="on_demand"}')).toBe(1);
      await within(
        2000,
        async () => (await metric(mesh.admin, 'meshlet_registry_consul_watches{kind="on_demand"}')) === 0,
        'idle watch stopped',
      );
      await within(
        1000,
        async () => (await via(mesh.outbound, 'billing')) === String(up.port),
        'billing now',
      );
    } finally {
      await mesh.close();
      await double.stop();
      await up.close();
    }
  });
});
