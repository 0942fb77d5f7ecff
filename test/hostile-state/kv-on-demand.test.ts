// etcd/redis on-demand upstreams are bounded: removed when their service leaves the catalog or goes idle, capped at 100.
import { Redis } from 'ioredis';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CatalogPublisher } from '../../src/registry/kv/catalog-publisher.ts';
import { InstanceCatalog } from '../../src/registry/kv/instance-catalog.ts';
import { RegistryMetrics } from '../../src/registry/kv/registry-metrics.ts';
import { upstreamSpec } from '../../src/config/schema.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { UpstreamTable } from '../../src/upstream/upstream-table.ts';
import { startMeshlet } from '../helpers/meshlet.ts';
import { samplesMatching } from '../helpers/metrics.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { RedisServer } from '../registry/servers.ts';
import { within } from '../consul/consul-helpers.ts';

const PREFIX = 'meshlet:services:';

const record = (service: string, port: number): string =>
  JSON.stringify({ id: `${service}-1`, service, address: '127.0.0.1', port, weight: 1, status: 'passing' });

async function statusOf(outbound: string, name: string): Promise<number> {
  const res = await request(`${outbound}/`, { headers: { host: name } });
  await res.body.dump();
  return res.statusCode;
}

describe('on-demand upstreams of the redis registry', () => {
  const server = new RedisServer();
  let client: Redis;
  let app: TestUpstream;

  beforeAll(async () => {
    await server.start();
    client = new Redis(server.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    app = await startUpstream();
  });
  afterAll(async () => {
    client.disconnect();
    await server.close();
    await app.close();
  });

  const startMesh = () =>
    startMeshlet({
      registry: { type: 'redis', redis: { url: server.url, prefix: PREFIX, ttl: '2s' } },
      upstreams: { users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });

  it('a service that leaves the catalog takes its upstream and series with it', async () => {
    const mesh = await startMesh();
    try {
      await within(5000, async () => (await request(`${mesh.admin}/ready`)).statusCode === 200, 'ready');
      for (let i = 0; i < 60; i++) {
        const name = `kvchurn${i}`;
        await client.set(`${PREFIX}${name}:${name}-1`, record(name, app.port));
        await within(2000, async () => (await statusOf(mesh.outbound, name)) === 200, `${name} routed`);
        await client.del(`${PREFIX}${name}:${name}-1`);
        await within(2000, () => !mesh.daemon.table.has(name), `${name} removed`);
        // Back to no_route, as a name the catalog never held.
        expect(await statusOf(mesh.outbound, name)).toBe(404);
      }
      expect([...mesh.daemon.table.values()].map((u) => u.name)).toEqual(['users']);
      await within(
        2000,
        async () => (await samplesMatching(mesh.admin, /kvchurn\d+/)).length === 0,
        'series of departed upstreams dropped',
      );
    } finally {
      await mesh.close();
    }
  }, 20_000);

  it('at most 100 on-demand upstreams at once; further names get no_route', async () => {
    const names = Array.from({ length: 110 }, (_, i) => `kvcap${i}`);
    await client.mset(...names.flatMap((n) => [`${PREFIX}${n}:${n}-1`, record(n, app.port)]));
    const mesh = await startMesh();
    try {
      await within(5000, async () => (await request(`${mesh.admin}/ready`)).statusCode === 200, 'ready');
      await within(3000, async () => (await statusOf(mesh.outbound, 'kvcap0')) === 200, 'catalog read');
      const statuses: number[] = [];
      for (const n of names) statuses.push(await statusOf(mesh.outbound, n));
      expect(statuses.filter((s) => s === 200).length).toBe(100);
      expect(statuses.slice(100)).toEqual(Array(10).fill(404));
      // users (configured) + 100 on-demand.
      expect([...mesh.daemon.table.values()].length).toBe(101);
      expect(
        mesh.logs.filter(
          (l) => l.msg === 'on-demand upstream limit reached; new upstream names get no_route',
        ),
      ).toHaveLength(1);
      // One leaving frees a place.
      await client.del(`${PREFIX}kvcap0:kvcap0-1`);
      await within(2000, async () => (await statusOf(mesh.outbound, 'kvcap105')) === 200, 'freed place used');
    } finally {
      await mesh.close();
      await client.del(...names.map((n) => `${PREFIX}${n}:${n}-1`));
    }
  }, 20_000);
});

describe('CatalogPublisher idle expiry', () => {
  it('an on-demand upstream unused for idleTimeoutMs is removed, with its series; a used one stays', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const logger = createLogger('silent');
    const registryMetrics = new RegistryMetrics('redis', metrics.registry, false);
    const catalog = new InstanceCatalog(
      (key) => {
        const [service, id] = key.split(':');
        return service === undefined || id === undefined ? undefined : { service, id };
      },
      registryMetrics,
      logger,
    );
    const table = new UpstreamTable(metrics, {}, upstreamSpec.parse({}));
    const publisher = new CatalogPublisher(table, catalog, registryMetrics, new Set(), logger, {
      idleTimeoutMs: 200,
    });
    publisher.attach();
    try {
      catalog.put('idle:1', record('idle', 1));
      catalog.put('busy:1', record('busy', 2));
      publisher.publish();
      expect(table.get('idle')?.name).toBe('idle');
      expect(table.get('busy')?.name).toBe('busy');
      table.get('idle')!.metrics.localReply('no_healthy_endpoints');
      const text = async () => metrics.registry.metrics();
      expect(await text()).toContain('upstream="idle"');
      const started = performance.now();
      await within(
        3000,
        () => {
          table.get('busy'); // in use
          return !table.has('idle');
        },
        'idle upstream removed',
      );
      expect(performance.now() - started).toBeGreaterThanOrEqual(150);
      expect(table.has('busy')).toBe(true);
      expect(publisher.onDemand).toBe(1);
      await within(1000, async () => !(await text()).includes('upstream="idle"'), 'idle series dropped');
    } finally {
      publisher.detach();
      await table.close();
    }
  });
});
