// Foreign keys under the Redis prefix: a key of another type or a huge value is skipped like a malformed value, never stalls discovery.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, metric, via, within } from '../consul/consul-helpers.ts';
import { RedisServer } from './servers.ts';

const prefix = 'meshlet:services:';
const peer = (port: number): string => JSON.stringify({ address: '127.0.0.1', port, status: 'passing' });

describe('redis registry: foreign keys under the prefix', () => {
  let server: RedisServer;
  let client: Redis;
  let a: TestUpstream;
  let b: TestUpstream;
  let mesh: InProcessMeshlet | undefined;

  beforeAll(async () => {
    server = new RedisServer();
    await server.start();
    client = new Redis(server.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    [a, b] = await Promise.all([startUpstream(), startUpstream()]);
  }, 30_000);
  afterAll(async () => {
    await mesh?.close();
    client?.disconnect();
    await Promise.all([a?.close(), b?.close()]);
    await server?.close();
  });

  it('at start: meshlet syncs, routes to the valid keys and counts the foreign one as invalid', async () => {
    await client.set(`${prefix}users:a`, peer(a.port));
    await client.hset(`${prefix}users:h`, 'address', '127.0.0.1');
    mesh = await startMeshlet({
      registry: { type: 'redis', redis: { url: server.url, ttl: '2s' } },
      upstreams: { users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    const m = mesh;
    await within(3000, async () => (await adminGet(m.admin, '/ready')).status === 200, 'ready');
    expect(await via(m.outbound, 'users')).toBe(String(a.port));
    expect(await metric(m.admin, 'meshlet_registry_redis_invalid_records_total')).toBe(1);
    expect(m.logs.find((l) => l.msg === 'skipping a malformed registry record')).toMatchObject({
      registryKey: `${prefix}users:h`,
      reason: 'not a string key (WRONGTYPE)',
    });
  });

  it('a huge value is refused as too large after reading 64 KiB of it, not all of it', async () => {
    const m = mesh!;
    const sent = async (): Promise<number> =>
      Number(/total_net_output_bytes:(\d+)/.exec(await client.info('stats'))?.[1]);
    const counted = await metric(m.admin, 'meshlet_registry_redis_invalid_records_total');
    await client.set(
      `${prefix}users:huge`,
      `{"address":"127.0.0.1","port":1,"pad":"${'x'.repeat(4 << 20)}"}`,
    );
    const before = await sent();
    await client.publish(`${prefix}events`, `${prefix}users:huge`);
    await within(
      3000,
      async () => (await metric(m.admin, 'meshlet_registry_redis_invalid_records_total')) > counted,
      'refused',
    );
    expect((await sent()) - before).toBeLessThan(1 << 20);
    expect(m.logs.filter((l) => l.registryKey === `${prefix}users:huge`).map((l) => l.reason)).toContain(
      'value larger than 64 KiB',
    );
    await client.del(`${prefix}users:huge`);
    expect(await via(m.outbound, 'users')).toBe(String(a.port));
  });

  it('later: a key turned into a list drops its instance; Redis stays reachable; other changes apply', async () => {
    const m = mesh!;
    await client.set(`${prefix}users:b`, peer(b.port));
    await within(3000, async () => (await via(m.outbound, 'users')) === String(b.port), 'b routed');
    const counted = await metric(m.admin, 'meshlet_registry_redis_invalid_records_total');
    await client.del(`${prefix}users:b`);
    await client.rpush(`${prefix}users:b`, 'x');
    await client.publish(`${prefix}events`, `${prefix}users:b`);
    await within(
      3000,
      async () => (await metric(m.admin, 'meshlet_registry_redis_invalid_records_total')) === counted + 1,
      'counted once',
    );
    for (let i = 0; i < 4; i++) expect(await via(m.outbound, 'users')).toBe(String(a.port));
    expect(await metric(m.admin, 'meshlet_registry_redis_up')).toBe(1);
    const ready = await adminGet<{ checks: Record<string, { detail: string }> }>(m.admin, '/ready');
    expect(ready.body.checks.redis?.detail).toBe('reachable');
  });
});
