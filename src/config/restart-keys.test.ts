import { describe, expect, it } from 'vitest';
import { registryRestartKeys, restartKeys } from './restart-keys.ts';

const base = {
  listeners: {
    outbound: { address: '127.0.0.1', port: 15001 },
    admin: { address: '127.0.0.1', port: 15000, token: 'secret-one' },
    inbound: {
      address: '0.0.0.0',
      port: 15443,
      allow: ['web'],
      maxConcurrent: 1024,
      rateLimit: { perSecond: 10 },
      appTimeout: 15_000,
      headersTimeout: 10_000,
    },
  },
};

const edit = (f: (l: typeof base.listeners) => void) => {
  const next = structuredClone(base);
  f(next.listeners);
  return next;
};

describe('restartKeys', () => {
  it('is empty for the same listeners and for changes a reload applies', () => {
    expect(restartKeys(base, structuredClone(base))).toEqual([]);
    const live = edit((l) => {
      l.admin.token = 'secret-two';
      l.inbound.allow = ['web', 'billing'];
      l.inbound.maxConcurrent = 10;
      l.inbound.rateLimit = { perSecond: 99 };
      l.inbound.appTimeout = 2000;
    });
    expect(restartKeys(base, live)).toEqual([]);
  });

  it('leaves out a changed maxConnections on any listener and the gateway body timeout', () => {
    const withGateway = { listeners: { ...base.listeners, gateway: { port: 8080, bodyTimeout: 30_000 } } };
    const next = structuredClone(withGateway);
    Object.assign(next.listeners.outbound, { maxConnections: 100 });
    Object.assign(next.listeners.inbound, { maxConnections: 50 });
    Object.assign(next.listeners.gateway, { maxConnections: 10, bodyTimeout: 5_000 });
    expect(restartKeys(withGateway, next)).toEqual([]);
    next.listeners.gateway.port = 8081;
    expect(restartKeys(withGateway, next)).toEqual(['listeners.gateway.port']);
  });

  it('names each address, port or socket setting that changed, added or went away', () => {
    const next = edit((l) => {
      l.outbound.port = 16001;
      l.inbound.headersTimeout = 5000;
      l.inbound.allow = ['*'];
    });
    expect(restartKeys(base, next)).toEqual(['listeners.inbound.headersTimeout', 'listeners.outbound.port']);
    const { inbound: _gone, ...rest } = base.listeners;
    expect(restartKeys(base, { listeners: rest })).toEqual([
      'listeners.inbound.address',
      'listeners.inbound.headersTimeout',
      'listeners.inbound.port',
    ]);
  });
});

describe('registryRestartKeys', () => {
  const consul = {
    registry: {
      type: 'consul',
      consul: { address: 'http://127.0.0.1:8500', token: 'token-one', datacenter: 'dc1' },
      check: { interval: 10_000, timeout: 2000 },
      filters: { users: { tags: ['v1'], connect: false } },
      watch: { wait: 300_000, idleTimeout: 300_000, maxOnDemand: 100 },
    },
  };
  const editConsul = (f: (r: typeof consul.registry) => void) => {
    const next = structuredClone(consul);
    f(next.registry);
    return next;
  };

  it('leaves out what each registry type reloads: consul token and watch, static endpoints, etcd and redis watch', () => {
    expect(registryRestartKeys(consul, structuredClone(consul))).toEqual([]);
    const live = editConsul((r) => {
      r.consul.token = 'token-two';
      Object.assign(r.consul, { tokenFile: '/run/secrets/consul-token' });
      r.watch = { wait: 60_000, idleTimeout: 1000, maxOnDemand: 0 };
    });
    expect(registryRestartKeys(consul, live)).toEqual([]);
    const fixed = { registry: { type: 'static', endpoints: { users: ['127.0.0.1:9001'] } } };
    const edited = { registry: { type: 'static', endpoints: { users: ['127.0.0.1:9002'], orders: [] } } };
    expect(registryRestartKeys(fixed, edited)).toEqual([]);
    for (const type of ['etcd', 'redis']) {
      const kv = { registry: { type, watch: { idleTimeout: 300_000, maxOnDemand: 100 } } };
      expect(
        registryRestartKeys(kv, { registry: { type, watch: { idleTimeout: 5, maxOnDemand: 0 } } }),
      ).toEqual([]);
    }
  });

  it('names every other changed, added or removed registry key, sorted, and never a value', () => {
    const next = editConsul((r) => {
      r.consul.address = 'http://10.0.0.2:8500';
      r.consul.token = 'token-two';
      delete (r.consul as { datacenter?: string }).datacenter;
      r.check.interval = 5000;
      r.filters.users.tags = ['v2'];
    });
    const keys = registryRestartKeys(consul, next);
    expect(keys).toEqual([
      'registry.check.interval',
      'registry.consul.address',
      'registry.consul.datacenter',
      'registry.filters.users.tags',
    ]);
    const etcd = {
      registry: {
        type: 'etcd',
        etcd: { hosts: ['http://a:2379'], auth: { username: 'u', password: 'pw-one' } },
      },
    };
    const etcdNext = structuredClone(etcd);
    etcdNext.registry.etcd.auth.password = 'pw-two';
    etcdNext.registry.etcd.hosts = ['http://b:2379'];
    const etcdKeys = registryRestartKeys(etcd, etcdNext);
    expect(etcdKeys).toEqual(['registry.etcd.auth.password', 'registry.etcd.hosts']);
    expect(JSON.stringify([keys, etcdKeys])).not.toMatch(/token-|pw-|10\.0\.0\.2|b:2379/);
    const redis = { registry: { type: 'redis', redis: { url: 'redis://u:pw-one@a:6379' } } };
    expect(
      registryRestartKeys(redis, { registry: { type: 'redis', redis: { url: 'redis://u:pw-two@a:6379' } } }),
    ).toEqual(['registry.redis.url']);
    const dns = { registry: { type: 'dns', dns: { servers: ['10.0.0.53'] }, upstreams: {} } };
    expect(
      registryRestartKeys(dns, {
        registry: {
          type: 'dns',
          dns: { servers: ['10.0.0.54'] },
          upstreams: { users: { host: 'u', port: 80 } },
        },
      }),
    ).toEqual(['registry.dns.servers', 'registry.upstreams.users.host', 'registry.upstreams.users.port']);
    const file = { registry: { type: 'static', file: '/etc/meshlet/a.yaml' } };
    expect(registryRestartKeys(file, { registry: { type: 'static', file: '/etc/meshlet/b.yaml' } })).toEqual([
      'registry.file',
    ]);
  });

  it('is empty when the registry type changed (registry.type is reported on its own)', () => {
    expect(registryRestartKeys(consul, { registry: { type: 'static' } })).toEqual([]);
  });
});
