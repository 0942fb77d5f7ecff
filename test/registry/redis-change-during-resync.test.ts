// A Redis key deleted or changed while a full SCAN runs: the notification's newer read wins over the SCAN's older one.
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendReachability } from '../../src/registry/backend-reachability.ts';
import { InstanceCatalog } from '../../src/registry/kv/instance-catalog.ts';
import { RegistryMetrics } from '../../src/registry/kv/registry-metrics.ts';
import { RedisCatalogSync } from '../../src/registry/redis/redis-catalog-sync.ts';
import { redisKeyParser } from '../../src/registry/redis/redis-registry.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { RedisServer } from './servers.ts';

const prefix = 'meshlet:services:';
const channel = `${prefix}events`;
const record = (port: number): string => JSON.stringify({ address: '127.0.0.1', port, status: 'passing' });

async function until(ms: number, check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The real client, except that the next `getrange` of `held.key` (the SCAN's read, once armed)
 * returns its value only when the test releases it: the change lands between the SCAN reading a
 * key and the SCAN replacing the catalog, the window every resync has.
 */
function holdingClient(real: Redis): {
  client: Redis;
  arm(key: string): { read: Promise<void>; release: () => void };
} {
  let held: { key: string; read: () => void; released: Promise<void> } | null = null;
  const client = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'getrange') {
        return async (key: string, start: number, end: number): Promise<string> => {
          const h = held?.key === key ? held : null;
          if (h !== null) held = null;
          const value = await target.getrange(key, start, end);
          if (h !== null) {
            h.read();
            await h.released;
          }
          return value;
        };
      }
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return {
    client,
    arm(key) {
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      let read!: () => void;
      const wasRead = new Promise<void>((r) => (read = r));
      held = { key, read, released };
      return { read: wasRead, release };
    },
  };
}

describe('redis registry: a change during a full SCAN', () => {
  let server: RedisServer;
  let writer: Redis;
  let real: Redis;
  let subscriber: Redis;
  let sync: RedisCatalogSync;
  let catalog: InstanceCatalog;
  let hold: ReturnType<typeof holdingClient>;

  beforeAll(async () => {
    server = new RedisServer();
    await server.start();
    writer = new Redis(server.url, { maxRetriesPerRequest: 1 });
    real = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    subscriber = real.duplicate();
    for (const c of [writer, real, subscriber]) c.on('error', () => undefined);
    const registry = new Registry();
    const metrics = new RegistryMetrics('redis', registry, false);
    const logger = createLogger('error', new Writable({ write: (_c, _e, cb) => cb() }));
    catalog = new InstanceCatalog(redisKeyParser(prefix), metrics, logger);
    hold = holdingClient(real);
    await writer.set(`${prefix}users:a`, record(9001));
    await writer.set(`${prefix}users:b`, record(9002));
    sync = new RedisCatalogSync({
      client: hold.client,
      subscriber,
      prefix,
      channel,
      db: 0,
      resyncIntervalMs: 60_000,
      graceMs: 2000,
      catalog,
      onChange: () => undefined,
      reach: new BackendReachability('redis', metrics, logger),
      metrics,
      logger,
    });
    await sync.start();
  }, 30_000);
  afterAll(async () => {
    sync?.stop();
    for (const c of [writer, real, subscriber]) c?.disconnect();
    await server?.close();
  });

  const ports = (): number[] => catalog.endpoints('users').map((e) => e.port);

  it('a key deleted after the SCAN read it stays deleted (not routed to until the next resync)', async () => {
    expect(ports()).toEqual([9001, 9002]);
    const victim = `${prefix}users:b`;
    const held = hold.arm(victim);
    const resync = sync.resync('interval');
    await held.read;
    await writer.del(victim);
    await until(3000, () => !catalog.hasKey(victim), 'the del notification applied');
    held.release();
    await resync;
    expect(ports()).toEqual([9001]);
  });

  it('a key rewritten after the SCAN read it keeps the new record', async () => {
    const key = `${prefix}users:a`;
    const held = hold.arm(key);
    const resync = sync.resync('interval');
    await held.read;
    await writer.set(key, record(9003));
    await until(3000, () => ports().includes(9003), 'the set notification applied');
    held.release();
    await resync;
    expect(ports()).toContain(9003);
    expect(ports()).not.toContain(9001);
  });
});
