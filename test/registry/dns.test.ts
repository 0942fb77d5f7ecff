// dns acceptance: SRV weights 1/2/3 share traffic ±10 %, a record change moves traffic within TTL + 1 s, resolver down keeps the last answer, NXDOMAIN empties, priorities.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { via, within } from '../consul/consul-helpers.ts';
import { DnsServer } from './servers.ts';

const SRV = '_http._tcp.users.default.svc.cluster.local';
const target = (n: string): string => `${n}.users.default.svc.cluster.local`;

describe('dns registry', () => {
  let dns: DnsServer;
  let ups: TestUpstream[];
  let mesh: InProcessMeshlet;

  const srv = (entries: { port: number; weight: number; priority?: number; name?: string }[]): void =>
    dns.set(
      SRV,
      entries.map((e, i) => ({
        type: 'SRV' as const,
        ttl: 1,
        data: {
          priority: e.priority ?? 10,
          weight: e.weight,
          port: e.port,
          target: target(e.name ?? `p${i}`),
        },
      })),
    );

  beforeAll(async () => {
    dns = new DnsServer();
    await dns.start();
    ups = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
    for (const n of ['p0', 'p1', 'p2']) dns.set(target(n), [{ type: 'A', ttl: 1, data: '127.0.0.1' }]);
    dns.set('orders.default.svc.cluster.local', [{ type: 'A', ttl: 1, data: '127.0.0.1' }]);
    srv(ups.map((u, i) => ({ port: u.port, weight: i + 1 })));
    mesh = await startMeshlet({
      registry: {
        type: 'dns',
        dns: { servers: [dns.address], minTtl: '200ms', maxTtl: '5s', timeout: '200ms' },
        upstreams: {
          users: { srv: SRV },
          orders: { host: 'orders.default.svc.cluster.local', port: ups[0]!.port },
          gone: { host: 'gone.default.svc.cluster.local', port: 80 },
        },
      },
      upstreams: { users: { loadBalancer: 'weighted' } },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
  }, 30_000);
  afterAll(async () => {
    await mesh?.close();
    await Promise.all(ups.map((u) => u.close()));
    await dns?.close();
  });

  it('SRV weights 1/2/3 share 600 requests in that proportion (±10 %)', async () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 600; i++) {
      const port = await via(mesh.outbound, 'users');
      counts.set(port, (counts.get(port) ?? 0) + 1);
    }
    ups.forEach((u, i) => {
      const expected = (600 * (i + 1)) / 6;
      expect(Math.abs((counts.get(String(u.port)) ?? 0) - expected)).toBeLessThanOrEqual(expected * 0.1);
    });
  });

  it('an A name routes to every address on the configured port; NXDOMAIN leaves the upstream empty', async () => {
    expect(await via(mesh.outbound, 'orders')).toBe(String(ups[0]!.port));
    expect(await via(mesh.outbound, 'gone')).toBe('status 503');
  });

  it('a changed record moves traffic within TTL + 1 s', async () => {
    const started = performance.now();
    srv([{ port: ups[2]!.port, weight: 1, name: 'p2' }]);
    await within(
      2000,
      async () => {
        const seen = new Set([await via(mesh.outbound, 'users'), await via(mesh.outbound, 'users')]);
        return seen.size === 1 && seen.has(String(ups[2]!.port));
      },
      'moved',
    );
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('resolver down: the last answer is kept, past maxTtl too', async () => {
    dns.down = true;
    try {
      await new Promise((r) => setTimeout(r, 1500));
      for (let i = 0; i < 5; i++) expect(await via(mesh.outbound, 'users')).toBe(String(ups[2]!.port));
    } finally {
      dns.down = false;
    }
  });

  it('only the lowest priority with resolvable targets gets traffic', async () => {
    srv([
      { port: ups[0]!.port, weight: 1, priority: 1, name: 'missing' },
      { port: ups[1]!.port, weight: 1, priority: 5, name: 'p1' },
      { port: ups[2]!.port, weight: 1, priority: 9, name: 'p2' },
    ]);
    await within(
      2000,
      async () => (await via(mesh.outbound, 'users')) === String(ups[1]!.port),
      'priority 5',
    );
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) seen.add(await via(mesh.outbound, 'users'));
    expect(seen).toEqual(new Set([String(ups[1]!.port)]));
    dns.set(target('missing'), [{ type: 'A', ttl: 1, data: '127.0.0.1' }]);
    await within(
      2000,
      async () => (await via(mesh.outbound, 'users')) === String(ups[0]!.port),
      'priority 1',
    );
  });
});
