// `meshlet services` and `meshlet health` print what the running meshlet sees; exit codes as documented.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, runCli, startMeshlet } from '../helpers/meshlet.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, consulRegistry, within } from './consul-helpers.ts';

describe('meshlet services / health', () => {
  let double: ConsulDouble;
  let app: TestUpstream;
  let a: TestUpstream;
  let b: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    double = new ConsulDouble();
    await double.start();
    [app, a, b] = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
    double.addInstance({ service: 'users', id: 'users-a', port: a.port });
    double.addInstance({ service: 'users', id: 'users-b', port: b.port });
    double.addInstance({ service: 'orders', id: 'orders-a', port: a.port });
    mesh = await startMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: consulRegistry(double, {
        serviceId: 'web-cli',
        check: { interval: '500ms', timeout: '200ms' },
      }),
      upstreams: { users: {}, orders: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    await within(3000, async () => (await adminGet(mesh.admin, '/ready')).status === 200, 'ready');
  });
  afterAll(async () => {
    await mesh?.close();
    await double?.stop();
    await Promise.all([app?.close(), a?.close(), b?.close()]);
  });

  it('services: a table of upstreams with healthy/total; --json; exit 0', async () => {
    const text = await runCli(['services', '--admin', mesh.admin]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^UPSTREAM\s+HEALTHY\/TOTAL\s+BALANCER\s+SOURCE\s+ENDPOINTS/);
    expect(text.stdout).toMatch(
      /\busers\s+2\/2\s+round_robin\s+configured\s+127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+/,
    );
    expect(text.stdout).toMatch(/\borders\s+1\/1\s+round_robin\s+configured/);
    const json = await runCli(['services', '--admin', mesh.admin, '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as {
      registry: string;
      upstreams: { name: string; healthy: number; total: number }[];
    };
    expect(parsed.registry).toBe('consul');
    expect(parsed.upstreams.map((u) => [u.name, u.healthy, u.total])).toEqual([
      ['orders', 1, 1],
      ['users', 2, 2],
    ]);
  });

  it('health: checks, upstreams and "healthy"; exit 0', async () => {
    const res = await runCli(['health', '--admin', mesh.admin]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^status: healthy/);
    expect(res.stdout).toMatch(/app\s+ok\s+passing: TCP connect 127\.0\.0\.1:\d+: Success/);
    expect(res.stdout).toMatch(/consul\s+ok\s+reachable/);
    expect(res.stdout).toMatch(/users\s+2\/2\s+ok/);
  });

  it('an upstream with no healthy endpoint → degraded, exit 1 (both verbs), with the reason', async () => {
    double.setInstanceStatus('orders-a', 'critical');
    await within(
      1000,
      async () => {
        const { body } = await adminGet<{ upstreams: Record<string, { healthy: number }> }>(
          mesh.admin,
          '/upstreams',
        );
        return body.upstreams.orders?.healthy === 0;
      },
      'orders empty',
    );
    const health = await runCli(['health', '--admin', mesh.admin, '--json']);
    expect(health.code).toBe(1);
    const report = JSON.parse(health.stdout) as { status: string; reasons: string[] };
    expect(report.status).toBe('degraded');
    expect(report.reasons).toContain('upstream orders: no healthy endpoint');
    const services = await runCli(['services', '--admin', mesh.admin]);
    expect(services.code).toBe(1);
    expect(services.stdout).toMatch(/\borders\s+0\/0/);
    double.setInstanceStatus('orders-a', 'passing');
  });

  it('the local app down → degraded with the app check failing, exit 1', async () => {
    const port = app.port;
    await app.close();
    await within(1500, async () => (await adminGet(mesh.admin, '/ready')).status === 503, 'app critical');
    const res = await runCli(['health', '--admin', mesh.admin]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/^status: degraded/);
    expect(res.stdout).toMatch(/app\s+FAIL\s+critical: TCP connect 127\.0\.0\.1:\d+: ECONNREFUSED/);
    app = await startUpstream(undefined, port);
  });

  it('admin API unreachable → exit 1 with the reason on stderr; bad usage → exit 2', async () => {
    const port = await closedPort();
    const res = await runCli(['health', '--admin', `http://127.0.0.1:${port}`]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/cannot read http:\/\/127\.0\.0\.1:\d+\/ready: ECONNREFUSED/);
    const usage = await runCli(['services', '--bogus']);
    expect(usage.code).toBe(2);
  });
});
