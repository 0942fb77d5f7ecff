// A real etcd or Redis server per test that the test stops (SIGKILL, SIGSTOP) and starts again by its PID, with a reader that answers null while it is down.
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import type { ConfigInput } from '../../src/config/schema.ts';
import { EtcdServer, RedisServer } from './servers.ts';

/** How long the test's own calls wait for an answer, ms: a stopped backend reads as down, not as a hang (generous: a loaded machine). */
const READ_MS = 3000;

/** A `web` key as the test reads it. */
export interface HeldKey {
  address: string;
  status: string;
}

/** One backend process a test owns, and its keys of `web`. */
export interface OutageBackend {
  readonly type: 'etcd' | 'redis';
  /** A `registry` section on this server: lease / key TTL `ttlMs`, calls bounded to `callTimeoutMs`, `extra` merged in. */
  registry(ttlMs: number, callTimeoutMs: number, extra: Record<string, unknown>): ConfigInput['registry'];
  /** The key of a `web` service ID, as meshlet shows it on /upstreams. */
  keyOf(id: string): string;
  /** Service ID → what its key holds, or null when the server does not answer. */
  web(): Promise<Record<string, HeldKey> | null>;
  /** Writes a `web` record under `id` as another process would (no refresh): it expires after `ttlMs` (etcd: whole seconds). */
  put(id: string, record: Record<string, unknown>, ttlMs: number): Promise<void>;
  /** SIGKILLs the server (by its PID) and waits for its exit. */
  kill(): Promise<void>;
  /**
   * Starts the server again on the same port (etcd: the same data dir, so its keys and leases survive;
   * Redis: empty, then the keys put with a TTL over 10 s, live instances', are written again as their
   * heartbeats would).
   */
  restart(): Promise<void>;
  /** SIGSTOPs the server: its connections stay open, nothing is answered. */
  freeze(): void;
  /** SIGCONTs a frozen server. */
  thaw(): void;
  close(): Promise<void>;
}

/** A fresh etcd member with `web` keys under `/meshlet/services/web/`. */
export async function etcdOutage(): Promise<OutageBackend> {
  const server = new EtcdServer();
  await server.start();
  const prefix = '/meshlet/services/web/';
  const connect = () =>
    new Etcd3({
      hosts: server.url,
      dialTimeout: READ_MS,
      defaultCallOptions: (c) => (c.isStream ? {} : { deadline: Date.now() + READ_MS }),
      faultHandling: { host: () => noop, global: noop },
    });
  let client = connect();
  return {
    type: 'etcd',
    registry: (ttlMs, callTimeoutMs, extra) =>
      ({
        type: 'etcd',
        etcd: { hosts: [server.url], leaseTtl: ttlMs, callTimeout: callTimeoutMs },
        ...extra,
      }) as ConfigInput['registry'],
    keyOf: (id) => `${prefix}${id}`,
    async web() {
      try {
        const all = await client.getAll().prefix(prefix).strings();
        return Object.fromEntries(
          Object.entries(all).map(([k, v]) => [k.slice(prefix.length), JSON.parse(v) as HeldKey]),
        );
      } catch {
        return null;
      }
    },
    async put(id, record, ttlMs) {
      await client
        .lease(Math.ceil(ttlMs / 1000), { autoKeepAlive: false })
        .put(`${prefix}${id}`)
        .value(JSON.stringify(record))
        .exec();
    },
    kill: () => server.stop('SIGKILL'),
    async restart() {
      client.close();
      await server.start();
      client = connect();
    },
    freeze: () => process.kill(server.proc!.pid!, 'SIGSTOP'),
    thaw: () => process.kill(server.proc!.pid!, 'SIGCONT'),
    async close() {
      if (server.proc?.pid !== undefined) process.kill(server.proc.pid, 'SIGCONT');
      client.close();
      await server.close();
    },
  };
}

/** A fresh redis-server (no persistence: a restart loses every key) with `web` keys under `meshlet:services:web:`. */
export async function redisOutage(): Promise<OutageBackend> {
  const server = new RedisServer();
  await server.start();
  const prefix = 'meshlet:services:web:';
  const client = new Redis(server.url, { maxRetriesPerRequest: 0, commandTimeout: READ_MS });
  client.on('error', () => undefined);
  /** Keys put with a long TTL (live instances'): written again after a restart, as their heartbeats would. */
  const bystanders = new Map<string, [string, number]>();
  return {
    type: 'redis',
    registry: (ttlMs, callTimeoutMs, extra) =>
      ({
        type: 'redis',
        redis: { url: server.url, ttl: ttlMs, callTimeout: callTimeoutMs },
        ...extra,
      }) as ConfigInput['registry'],
    keyOf: (id) => `${prefix}${id}`,
    async web() {
      try {
        const keys = await client.keys(`${prefix}*`);
        const values = keys.length === 0 ? [] : await client.mget(...keys);
        return Object.fromEntries(
          keys.flatMap((k, i) => {
            const v = values[i];
            return v === null || v === undefined ? [] : [[k.slice(prefix.length), JSON.parse(v) as HeldKey]];
          }),
        );
      } catch {
        return null;
      }
    },
    async put(id, record, ttlMs) {
      await client.set(`${prefix}${id}`, JSON.stringify(record), 'PX', ttlMs);
      if (ttlMs > 10_000) bystanders.set(`${prefix}${id}`, [JSON.stringify(record), ttlMs]);
    },
    kill: () => server.stop('SIGKILL'),
    async restart() {
      await server.start();
      // Empty: a live instance's heartbeat writes its key again (here, the bystander's), once the client is back.
      const deadline = performance.now() + 10_000;
      for (const [key, [value, ttlMs]] of bystanders) {
        for (;;) {
          try {
            await client.set(key, value, 'PX', ttlMs);
            break;
          } catch (err) {
            if (performance.now() > deadline) throw err;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      }
    },
    freeze: () => process.kill(server.proc!.pid!, 'SIGSTOP'),
    thaw: () => process.kill(server.proc!.pid!, 'SIGCONT'),
    async close() {
      if (server.proc?.pid !== undefined) process.kill(server.proc.pid, 'SIGCONT');
      client.disconnect();
      await server.close();
    },
  };
}
