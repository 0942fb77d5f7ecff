// A reload names the registry keys it cannot apply (per registry type) like listener keys: warning, partial result, notApplied, metric; secrets by name only.
import { writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { consulRegistry } from '../consul/consul-helpers.ts';
import { writeConfig } from '../helpers/meshlet.ts';
import { RedisServer } from '../registry/servers.ts';

const WARNING = 'registry changes need a restart; other changes applied';

interface Outcome {
  /** `/config`'s lastReload. */
  lastReload: { result?: string; notApplied?: string[] };
  /** The keys of the registry warning (undefined when none was logged). */
  warned: string[] | undefined;
  /** `/metrics` text after the reload. */
  metrics: string;
  /** Every log line of the daemon, as written. */
  logText: string;
}

/** Starts a daemon on `registry`, reloads it with `next`, and resolves with what the reload reported. */
async function reloadRegistry(
  registry: ConfigInput['registry'],
  next: ConfigInput['registry'],
): Promise<Outcome> {
  const input = (r: ConfigInput['registry']): ConfigInput => ({
    registry: r,
    listeners: { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } },
    accessLog: { enabled: false },
    shutdown: { drainDelay: 0 },
  });
  const file = writeConfig(input(registry));
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const daemon = await Daemon.start(validateConfig(input(registry)), {
    logger: createLogger('info', sink),
    configFile: file,
    processMetrics: false,
  });
  try {
    writeFileSync(file, stringify(input(next)));
    expect(await daemon.reload()).toBe(true);
    const admin = `http://127.0.0.1:${daemon.addresses().admin.port}`;
    const doc = (await (await request(`${admin}/config`)).body.json()) as {
      lastReload: Outcome['lastReload'];
    };
    const metrics = await (await request(`${admin}/metrics`)).body.text();
    const warning = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === WARNING);
    return {
      lastReload: doc.lastReload,
      warned: warning?.keys as string[] | undefined,
      metrics,
      logText: lines.join('\n'),
    };
  } finally {
    await daemon.shutdown('test');
  }
}

const notAppliedSeries = (metrics: string): string[] =>
  [...metrics.matchAll(/^meshlet_config_keys_not_applied_total\{key="([^"]+)"\} 1$/gm)]
    .map((m) => m[1]!)
    .sort();

describe('a reload with registry changes it cannot apply', () => {
  let double: ConsulDouble;
  beforeAll(async () => {
    double = new ConsulDouble();
    await double.start();
  });
  afterAll(async () => {
    await double?.stop();
  });

  it('consul: names the agent, datacenter, check and filter keys (partial); the token and watch keys apply (ok)', async () => {
    const running = consulRegistry(double, {
      consul: { token: 'token-running-0123' },
      filters: { users: { tags: ['v1'] } },
    });
    const changed = consulRegistry(double, {
      consul: { token: 'token-next-4567', datacenter: 'dc2' },
      check: { interval: '5s' },
      filters: { users: { tags: ['v2'] } },
      watch: { maxOnDemand: 7 },
    });
    (changed as { consul: { address: string } }).consul.address = 'http://127.0.0.1:1';
    const keys = [
      'registry.check.interval',
      'registry.consul.address',
      'registry.consul.datacenter',
      'registry.filters.users.tags',
    ];
    const o = await reloadRegistry(running, changed);
    expect(o.warned).toEqual(keys);
    expect(o.lastReload).toMatchObject({ result: 'partial', notApplied: keys });
    expect(notAppliedSeries(o.metrics)).toEqual(keys);
    expect(o.logText).not.toContain('token-running-0123');
    expect(o.logText).not.toContain('token-next-4567');

    const live = consulRegistry(double, {
      consul: { token: 'token-next-4567' },
      filters: { users: { tags: ['v1'] } },
      watch: { maxOnDemand: 7, idleTimeout: '1m', wait: '30s' },
    });
    const ok = await reloadRegistry(running, live);
    expect(ok.warned).toBeUndefined();
    expect(ok.lastReload).toEqual(expect.objectContaining({ result: 'ok' }));
    expect(ok.lastReload.notApplied).toBeUndefined();
  }, 20_000);

  it('static: registry.file needs a restart, registry.endpoints applies', async () => {
    const endpoints = writeConfig('users: ["127.0.0.1:9001"]\n', 'a.yaml');
    const other = writeConfig('users: ["127.0.0.1:9002"]\n', 'b.yaml');
    const o = await reloadRegistry(
      { type: 'static', file: endpoints, endpoints: { orders: ['127.0.0.1:9003'] } },
      { type: 'static', file: other, endpoints: { orders: ['127.0.0.1:9004'] } },
    );
    expect(o.warned).toEqual(['registry.file']);
    expect(o.lastReload).toMatchObject({ result: 'partial', notApplied: ['registry.file'] });
  });

  it('dns: every registry key needs a restart (resolver settings and upstreams)', async () => {
    const o = await reloadRegistry(
      { type: 'dns', dns: { servers: ['127.0.0.1:1'] }, upstreams: {} },
      {
        type: 'dns',
        dns: { servers: ['127.0.0.1:1'], timeout: '1s' },
        upstreams: { users: { host: 'users.example', port: 80 } },
      },
    );
    const keys = [
      'registry.dns.timeout',
      'registry.upstreams.users.host',
      'registry.upstreams.users.port',
      'registry.upstreams.users.transport',
    ];
    expect(o.warned).toEqual(keys);
    expect(o.lastReload).toMatchObject({ result: 'partial', notApplied: keys });
  });

  describe('redis', () => {
    let redis: RedisServer;
    beforeAll(async () => {
      redis = new RedisServer();
      await redis.start();
    }, 20_000);
    afterAll(async () => {
      await redis?.close();
    });

    it('names a changed password and url by key, never their values; watch applies', async () => {
      const o = await reloadRegistry(
        { type: 'redis', redis: { url: redis.url } },
        {
          type: 'redis',
          redis: {
            url: `redis://meshlet:url-secret-0123@127.0.0.1:${redis.port}`,
            password: 'pw-secret-4567',
          },
          watch: { maxOnDemand: 3, idleTimeout: '10s' },
        },
      );
      expect(o.warned).toEqual(['registry.redis.password', 'registry.redis.url']);
      expect(o.lastReload).toMatchObject({
        result: 'partial',
        notApplied: ['registry.redis.password', 'registry.redis.url'],
      });
      expect(o.logText).not.toContain('url-secret-0123');
      expect(o.logText).not.toContain('pw-secret-4567');
      expect(o.metrics).not.toContain('secret');
    }, 20_000);
  });
});
