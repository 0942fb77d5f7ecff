// The etcd and Redis backends of the service-ID tests: a real server each, read and written as another process would.
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import type { ConfigInput } from '../../src/config/schema.ts';
import { EtcdServer, RedisServer } from './servers.ts';

/** The default key TTL of {@link Kv.registry} (etcd lease, Redis key), ms. */
export const KV_TTL = 2000;

/** What a key holds, as the test reads it. */
export interface Held {
  address: string;
  status: string;
  output: string;
}

/** Drives one key-value backend from the test. */
export interface Kv {
  type: 'etcd' | 'redis';
  /** A `registry` section on this backend (lease / key TTL `ttlMs`, default {@link KV_TTL}), with `extra` merged in. */
  registry(extra?: Record<string, unknown>, ttlMs?: number): ConfigInput['registry'];
  /** Service ID → what its key holds, for every key of `web`. */
  web(): Promise<Record<string, Held>>;
  /** Writes a `web` record under `id` as another process would, expiring after `ttlMs` unless refreshed. */
  put(id: string, record: Record<string, unknown>, ttlMs: number): Promise<void>;
  clear(): Promise<void>;
  /**
   * The same server with every key under another registry prefix (`registry.<type>.prefix`
   * `root`): a test's own keys, which no other test's meshlets read or write. Its `close` does
   * nothing (the server stays until this `Kv` closes).
   */
  under(root: string): Kv;
  close(): Promise<void>;
}

const parse = (v: string): Held => {
  const r = JSON.parse(v) as Held;
  return { address: r.address, status: r.status, output: r.output };
};

/** A real etcd member; keys of `web` under `/meshlet/services/web/` (see {@link Kv.under}). */
export async function etcdKv(): Promise<Kv> {
  const server = new EtcdServer();
  await server.start();
  const client = new Etcd3({ hosts: server.url });
  const view = (root: string, close: () => Promise<void>): Kv => {
    const prefix = `${root}web/`;
    return {
      type: 'etcd',
      registry: (extra = {}, ttlMs = KV_TTL) =>
        ({
          type: 'etcd',
          etcd: { hosts: [server.url], leaseTtl: ttlMs, prefix: root },
          ...extra,
        }) as ConfigInput['registry'],
      async web() {
        const all = await client.getAll().prefix(prefix).strings();
        return Object.fromEntries(Object.entries(all).map(([k, v]) => [k.slice(prefix.length), parse(v)]));
      },
      async put(id, record, ttlMs) {
        await client
          .lease(Math.ceil(ttlMs / 1000), { autoKeepAlive: false })
          .put(`${prefix}${id}`)
          .value(JSON.stringify(record))
          .exec();
      },
      clear: async () => {
        await client.delete().prefix(prefix).exec();
      },
      under: (other) => view(other, async () => undefined),
      close,
    };
  };
  return view('/meshlet/services/', async () => {
    client.close();
    await server.close();
  });
}

/** A real redis-server; keys of `web` under `meshlet:services:web:` (see {@link Kv.under}). */
export async function redisKv(): Promise<Kv> {
  const server = new RedisServer();
  await server.start();
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  const view = (root: string, close: () => Promise<void>): Kv => {
    const prefix = `${root}web:`;
    return {
      type: 'redis',
      registry: (extra = {}, ttlMs = KV_TTL) =>
        ({
          type: 'redis',
          redis: { url: server.url, ttl: ttlMs, prefix: root },
          ...extra,
        }) as ConfigInput['registry'],
      async web() {
        const keys = await client.keys(`${prefix}*`);
        const values = keys.length === 0 ? [] : await client.mget(...keys);
        return Object.fromEntries(
          keys.flatMap((k, i) =>
            values[i] === null || values[i] === undefined
              ? []
              : [[k.slice(prefix.length), parse(values[i]!)]],
          ),
        );
      },
      async put(id, record, ttlMs) {
        await client.set(`${prefix}${id}`, JSON.stringify(record), 'PX', ttlMs);
      },
      clear: async () => {
        const keys = await client.keys(`${prefix}*`);
        if (keys.length > 0) await client.del(...keys);
      },
      under: (other) => view(other, async () => undefined),
      close,
    };
  };
  return view('meshlet:services:', async () => {
    client.disconnect();
    await server.close();
  });
}

/**
 * How long a meshlet on `type` with check interval `intervalMs` and key TTL `ttlMs` (whole seconds
 * here) watches a key held at another address before calling it another live instance's: the TTL
 * (etcd: plus its 500 ms lease check) and one check interval.
 */
export function holderGraceMs(type: 'etcd' | 'redis', intervalMs: number, ttlMs = KV_TTL): number {
  return ttlMs + (type === 'etcd' ? 500 : 0) + intervalMs;
}
