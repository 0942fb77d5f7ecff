// The registry contract, tested once for every type: discovery, propagation, outages, status, registration and health.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, metric, via, within } from '../consul/consul-helpers.ts';
import {
  consulHarness,
  dnsHarness,
  etcdHarness,
  type Harness,
  redisHarness,
  staticHarness,
} from './harnesses.ts';

const harnesses: Harness[] = [staticHarness(), consulHarness(), dnsHarness(), etcdHarness(), redisHarness()];

/** The upstream ports that answered `n` requests to `users` (status text for refusals). */
async function spread(outbound: string, n: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) seen.add(await via(outbound, 'users'));
  return seen;
}

// Every registry type has its own backend, upstreams and meshlet, so the types run side by side
// (`describe.concurrent`); the tests of one type run in order (`concurrent: false`), each building on the last.
describe.concurrent.each(harnesses)('registry conformance: $type', (h) => {
  let a: TestUpstream;
  let b: TestUpstream;
  let c: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    await h.setup();
    [a, b, c] = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
    await h.publish([
      { id: 'a', port: a.port },
      { id: 'b', port: b.port },
    ]);
    mesh = await startMeshlet({
      registry: h.registry(),
      upstreams: { users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
  }, 30_000);
  afterAll(async () => {
    await mesh?.close();
    await Promise.all([a?.close(), b?.close(), c?.close()]);
    await h.teardown();
  });

  it(
    'discovers the peers and shows it on /ready, /upstreams and metrics',
    { concurrent: false },
    async () => {
      await within(
        h.propagationMs + 2000,
        async () => (await adminGet(mesh.admin, '/ready')).status === 200,
        '/ready',
      );
      await within(h.propagationMs, async () => (await spread(mesh.outbound, 6)).size === 2, 'both peers');
      expect(await spread(mesh.outbound, 6)).toEqual(new Set([String(a.port), String(b.port)]));
      const ups = await adminGet<{ registry: { type: string; synced: boolean } }>(mesh.admin, '/upstreams');
      expect(ups.body.registry.type).toBe(h.type);
      expect(ups.body.registry.synced).toBe(true);
      expect(await metric(mesh.admin, 'meshlet_upstream_endpoints{upstream="users",state="healthy"}')).toBe(
        2,
      );
      if (h.upMetric !== null) expect(await metric(mesh.admin, h.upMetric)).toBe(1);
    },
  );

  it('propagates a change within the stated time', { concurrent: false }, async () => {
    await h.publish([
      { id: 'a', port: a.port },
      { id: 'c', port: c.port },
    ]);
    const took = await within(
      h.propagationMs,
      async () => {
        const seen = await spread(mesh.outbound, 6);
        return seen.has(String(c.port)) && !seen.has(String(b.port));
      },
      'c in, b out',
    );
    expect(took).toBeLessThan(h.propagationMs);
  });

  it(
    'keeps the last endpoints while the backend is down and resyncs after it returns',
    { concurrent: false, timeout: 30_000 },
    async () => {
      await h.down();
      await new Promise((r) => setTimeout(r, 500));
      const during = await spread(mesh.outbound, 20);
      expect(during).toEqual(new Set([String(a.port), String(c.port)]));
      if (h.upMetric !== null) {
        await within(5000, async () => (await metric(mesh.admin, h.upMetric!)) === 0, `${h.upMetric} 0`);
      }
      expect((await adminGet(mesh.admin, '/ready')).status).toBe(200);
      await h.up();
      await h.publish([{ id: 'b', port: b.port }]);
      await within(
        h.propagationMs + 5000,
        async () => {
          const seen = await spread(mesh.outbound, 4);
          return seen.size === 1 && seen.has(String(b.port));
        },
        'change after the backend returned',
      );
      if (h.upMetric !== null) expect(await metric(mesh.admin, h.upMetric)).toBe(1);
    },
  );
});

describe.concurrent.each([consulHarness(), etcdHarness(), redisHarness()])(
  'registry conformance, registration: $type',
  (h) => {
    beforeAll(() => h.setup(), 30_000);
    afterAll(() => h.teardown());

    it('registers this instance with a TTL and keeps it alive, follows the app health, deregisters on stop', async () => {
      let app: TestUpstream | null = await startUpstream();
      const appPort = app.port;
      const self = await startMeshlet({
        service: { name: 'web', port: appPort, address: '127.0.0.1' },
        registry: h.registry({ check: { http: '/', interval: '200ms', timeout: '100ms' } }),
        accessLog: { enabled: false },
        shutdown: { drainDelay: 0 },
      });
      try {
        const passing = async () => (await h.registered!('web')).some((r) => r.status === 'passing');
        await within(3000, passing, 'registered passing');
        // Alive past the TTL / lease (2 s in these configs): the keep-alive works.
        await new Promise((r) => setTimeout(r, 3000));
        expect(await passing()).toBe(true);
        await app.close();
        app = null;
        await within(
          2000,
          async () => !(await h.registered!('web')).some((r) => r.status === 'passing'),
          'critical when the app is down',
        );
        expect((await adminGet(self.admin, '/ready')).status).toBe(503);
        app = await startUpstream(undefined, appPort);
        await within(2000, passing, 'passing again');
      } finally {
        await self.close();
        await app?.close();
      }
      // Consul's double keeps a deregistered service 0 ms; the others delete the key at once.
      expect(await h.registered!('web')).toEqual([]);
    }, 30_000);
  },
);
