// One harness per registry type for the conformance suite: how to publish peers, break the backend and read registrations.
import { writeFileSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import type { ConfigInput } from '../../src/config/schema.ts';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { writeConfig } from '../helpers/meshlet.ts';
import { DnsServer, EtcdServer, RedisServer } from './servers.ts';

/** A peer instance of the upstream `users`. */
export interface Peer {
  id: string;
  port: number;
}

/** How the suite drives one registry type. */
export interface Harness {
  readonly type: string;
  /** Whether the type registers this instance (dns and static do not). */
  readonly registers: boolean;
  /** The stated time a change takes to reach routing, ms. */
  readonly propagationMs: number;
  /** The `_up` gauge, for types with a backend. */
  readonly upMetric: string | null;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** The `registry` section discovering `users` (and registering, when `service` is set). */
  registry(extra?: Record<string, unknown>): ConfigInput['registry'];
  /** Makes `peers` the instances of `users`. */
  publish(peers: Peer[]): Promise<void>;
  /** Backend unreachable (or the file broken). */
  down(): Promise<void>;
  up(): Promise<void>;
  /** Instances of `service` the backend holds, with their status. */
  registered?(service: string): Promise<{ port: number; status: string }[]>;
}

const record = (p: Peer, service = 'users'): string =>
  JSON.stringify({ id: p.id, service, address: '127.0.0.1', port: p.port, weight: 1, status: 'passing' });

export function staticHarness(): Harness {
  let file = '';
  let last: Peer[] = [];
  return {
    type: 'static',
    registers: false,
    propagationMs: 1000,
    upMetric: null,
    async setup() {
      file = writeConfig({ users: [] } as never, 'endpoints.yaml');
    },
    async teardown() {},
    registry: () => ({ type: 'static', file }),
    async publish(peers) {
      last = peers;
      writeFileSync(file, stringify({ users: peers.map((p) => `127.0.0.1:${p.port}`) }));
    },
    async down() {
      writeFileSync(file, 'users: [not an endpoint');
    },
    async up() {
      writeFileSync(file, stringify({ users: last.map((p) => `127.0.0.1:${p.port}`) }));
    },
  };
}

export function consulHarness(): Harness {
  const double = new ConsulDouble();
  let ids: string[] = [];
  return {
    type: 'consul',
    registers: true,
    propagationMs: 1000,
    upMetric: 'meshlet_registry_consul_up',
    setup: async () => {
      await double.start();
    },
    teardown: () => double.stop(),
    registry: (extra = {}) =>
      ({ type: 'consul', consul: { address: double.url }, ...extra }) as ConfigInput['registry'],
    async publish(peers) {
      for (const id of ids) double.removeInstance(id);
      ids = peers.map((p) => double.addInstance({ service: 'users', id: p.id, port: p.port }));
    },
    down: () => double.setDown(true),
    up: () => double.setDown(false),
    async registered(service) {
      return double.instances(service).map((s) => ({
        port: s.port,
        status: double.checks(s.id).find((c) => c.checkId === `service:${s.id}`)?.status ?? 'unknown',
      }));
    },
  };
}

export function dnsHarness(): Harness {
  const dns = new DnsServer();
  const srv = '_http._tcp.users.default.svc.cluster.local';
  return {
    type: 'dns',
    registers: false,
    propagationMs: 2000, // TTL (1 s) + 1 s
    upMetric: 'meshlet_registry_dns_up',
    setup: () => dns.start(),
    teardown: () => dns.close(),
    registry: () => ({
      type: 'dns',
      dns: { servers: [dns.address], minTtl: '200ms', maxTtl: '1s', timeout: '200ms' },
      upstreams: { users: { srv } },
    }),
    async publish(peers) {
      dns.set(
        srv,
        peers.map((p) => ({
          type: 'SRV',
          ttl: 1,
          data: { priority: 10, weight: 1, port: p.port, target: 'pods.users.default.svc.cluster.local' },
        })),
      );
      dns.set('pods.users.default.svc.cluster.local', [{ type: 'A', ttl: 1, data: '127.0.0.1' }]);
    },
    async down() {
      dns.down = true;
    },
    async up() {
      dns.down = false;
    },
  };
}

export function etcdHarness(): Harness {
  const server = new EtcdServer();
  let client: Etcd3;
  const prefix = '/meshlet/services/';
  return {
    type: 'etcd',
    registers: true,
    propagationMs: 1000,
    upMetric: 'meshlet_registry_etcd_up',
    async setup() {
      await server.start();
      client = new Etcd3({ hosts: server.url });
    },
    async teardown() {
      client.close();
      await server.close();
    },
    registry: (extra = {}) =>
      ({
        type: 'etcd',
        etcd: { hosts: [server.url], prefix, leaseTtl: '2s' },
        ...extra,
      }) as ConfigInput['registry'],
    async publish(peers) {
      await client.delete().prefix(`${prefix}users/`).exec();
      for (const p of peers) await client.put(`${prefix}users/${p.id}`).value(record(p)).exec();
    },
    down: () => server.stop(),
    up: () => server.start(),
    async registered(service) {
      const all = await client.getAll().prefix(`${prefix}${service}/`).strings();
      return Object.values(all).map((v) => JSON.parse(v) as { port: number; status: string });
    },
  };
}

export function redisHarness(): Harness {
  const server = new RedisServer();
  let client: Redis;
  const prefix = 'meshlet:services:';
  let last: Peer[] = [];
  return {
    type: 'redis',
    registers: true,
    propagationMs: 1000,
    upMetric: 'meshlet_registry_redis_up',
    async setup() {
      await server.start();
      client = new Redis(server.url, { maxRetriesPerRequest: 1 });
      client.on('error', () => undefined);
    },
    async teardown() {
      client.disconnect();
      await server.close();
    },
    registry: (extra = {}) =>
      ({ type: 'redis', redis: { url: server.url, prefix, ttl: '2s' }, ...extra }) as ConfigInput['registry'],
    async publish(peers) {
      last = peers;
      const keys = await client.keys(`${prefix}users:*`);
      if (keys.length > 0) await client.del(...keys);
      for (const p of peers) await client.set(`${prefix}users:${p.id}`, record(p));
    },
    down: () => server.stop(),
    async up() {
      await server.start();
      // A restart without persistence lost the peers: publish them again as their meshlets would.
      await this.publish(last);
    },
    async registered(service) {
      const keys = await client.keys(`${prefix}${service}:*`);
      const values = keys.length === 0 ? [] : await client.mget(...keys);
      return values.filter((v) => v !== null).map((v) => JSON.parse(v!) as { port: number; status: string });
    },
  };
}
