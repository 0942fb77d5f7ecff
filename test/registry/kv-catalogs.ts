// The etcd and Redis catalogs of the registry tests: a real server each, with any service's instances written and read as another process would.
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import type { ConfigInput } from '../../src/config/schema.ts';
import { EtcdServer, RedisServer } from './servers.ts';

/** Drives one key-value backend from the test: any service's keys, written and read as another process would. */
export interface CatalogKv {
  type: 'etcd' | 'redis';
  server: EtcdServer | RedisServer;
  /** A `registry` section on this backend (TTL 2 s), with `extra` merged in. */
  registry(extra?: Record<string, unknown>): ConfigInput['registry'];
  /** Writes `value` at `service`/`id`, expiring after `ttlMs` (whole seconds on etcd; default: never). */
  put(service: string, id: string, value: string, ttlMs?: number): Promise<void>;
  /** The keys of `service`'s instances. */
  keys(service: string): Promise<string[]>;
  /** Restarts the backend; `wipe` loses every key. */
  restart(wipe: boolean): Promise<void>;
  close(): Promise<void>;
}

/** A real etcd member; instances at `/meshlet/services/<service>/<id>` (the default prefix), lease TTL 2 s. */
export async function etcdCatalogKv(): Promise<CatalogKv> {
  const server = new EtcdServer();
  await server.start();
  const client = new Etcd3({ hosts: server.url });
  const prefix = '/meshlet/services/';
  return {
    type: 'etcd',
    server,
    registry: (extra = {}) =>
      ({ type: 'etcd', etcd: { hosts: [server.url], leaseTtl: '2s' }, ...extra }) as ConfigInput['registry'],
    async put(service, id, value, ttlMs) {
      if (ttlMs === undefined) await client.put(`${prefix}${service}/${id}`).value(value).exec();
      else
        await client
          .lease(ttlMs / 1000, { autoKeepAlive: false })
          .put(`${prefix}${service}/${id}`)
          .value(value)
          .exec();
    },
    keys: async (service) =>
      client
        .getAll()
        .prefix(`${prefix}${service}/`)
        .keys()
        .then((k) => k.map(String)),
    async restart(wipe) {
      await server.stop();
      if (wipe) server.wipe();
      await server.start();
    },
    async close() {
      client.close();
      await server.close();
    },
  };
}

/** A real redis-server (no persistence); instances at `meshlet:services:<service>:<id>` (the default prefix), key TTL 2 s. */
export async function redisCatalogKv(): Promise<CatalogKv> {
  const server = new RedisServer();
  await server.start();
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  const prefix = 'meshlet:services:';
  return {
    type: 'redis',
    server,
    registry: (extra = {}) =>
      ({ type: 'redis', redis: { url: server.url, ttl: '2s' }, ...extra }) as ConfigInput['registry'],
    async put(service, id, value, ttlMs) {
      const key = `${prefix}${service}:${id}`;
      if (ttlMs === undefined) await client.set(key, value);
      else await client.set(key, value, 'PX', ttlMs);
    },
    keys: (service) => client.keys(`${prefix}${service}:*`),
    async restart() {
      await server.stop();
      await server.start(); // no persistence: every key is lost
    },
    async close() {
      client.disconnect();
      await server.close();
    },
  };
}
