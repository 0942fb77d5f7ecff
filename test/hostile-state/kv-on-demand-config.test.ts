// etcd/redis `registry.watch.maxOnDemand` and `idleTimeout` from config, as Consul's: the cap, 0 disabling, idle removal and reload.
import { writeFileSync } from 'node:fs';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { within } from '../consul/consul-helpers.ts';
import { type CatalogKv as Kv, etcdCatalogKv, redisCatalogKv } from '../registry/kv-catalogs.ts';

const LIMIT_MSG = 'on-demand upstream limit reached; new upstream names get no_route';

const record = (service: string, port: number): string =>
  JSON.stringify({ id: `${service}-1`, service, address: '127.0.0.1', port, weight: 1, status: 'passing' });

async function statusOf(outbound: string, name: string): Promise<number> {
  const res = await request(`${outbound}/`, {
    headers: { host: name },
    headersTimeout: 5000,
    bodyTimeout: 5000,
  });
  await res.body.dump();
  return res.statusCode;
}

const ready = async (admin: string): Promise<boolean> =>
  (await request(`${admin}/ready`, { headersTimeout: 2000 })).statusCode === 200;

describe.each([
  ['etcd', etcdCatalogKv],
  ['redis', redisCatalogKv],
])('%s registry.watch', (_type, makeKv) => {
  let kv: Kv;
  let app: TestUpstream;

  beforeAll(async () => {
    kv = await makeKv();
    app = await startUpstream();
    for (const name of ['users', 'alpha', 'beta', 'gamma'])
      await kv.put(name, `${name}-1`, record(name, app.port));
  }, 30_000);
  afterAll(async () => {
    await kv?.close();
    await app?.close();
  });

  const base = (watch?: Record<string, unknown>): ConfigInput => ({
    registry: kv.registry(watch === undefined ? {} : { watch }),
    upstreams: { users: {} },
    accessLog: { enabled: false },
    shutdown: { drainDelay: 0 },
  });

  it('maxOnDemand: 2 refuses the third new name (404 no_route, logged once); idleTimeout frees the places', async () => {
    const mesh = await startMeshlet(base({ maxOnDemand: 2, idleTimeout: '400ms' }));
    try {
      await within(5000, () => ready(mesh.admin), 'ready');
      await within(3000, async () => (await statusOf(mesh.outbound, 'alpha')) === 200, 'alpha routed');
      expect(await statusOf(mesh.outbound, 'beta')).toBe(200);
      expect(await statusOf(mesh.outbound, 'gamma')).toBe(404);
      expect(await statusOf(mesh.outbound, 'gamma')).toBe(404);
      expect(mesh.daemon.table.has('gamma')).toBe(false);
      const capped = mesh.logs.filter((l) => l.msg === LIMIT_MSG);
      expect(capped).toHaveLength(1);
      expect(capped[0]).toMatchObject({ upstream: 'gamma', maxOnDemand: 2 });
      // Unused, alpha and beta go after idleTimeout (their keys stay in the catalog).
      const started = performance.now();
      await within(
        3000,
        () => !mesh.daemon.table.has('alpha') && !mesh.daemon.table.has('beta'),
        'idle upstreams removed',
      );
      expect(performance.now() - started).toBeGreaterThanOrEqual(300);
      expect(mesh.daemon.table.has('users')).toBe(true);
      expect(await statusOf(mesh.outbound, 'gamma')).toBe(200);
    } finally {
      await mesh.close();
    }
  }, 20_000);

  it('maxOnDemand: 0 disables on-demand discovery: a configured name routes, any other is 404, no limit log', async () => {
    const mesh = await startMeshlet(base({ maxOnDemand: 0 }));
    try {
      await within(5000, () => ready(mesh.admin), 'ready');
      await within(3000, async () => (await statusOf(mesh.outbound, 'users')) === 200, 'users routed');
      expect(await statusOf(mesh.outbound, 'alpha')).toBe(404);
      expect(mesh.daemon.table.has('alpha')).toBe(false);
      expect(mesh.logs.filter((l) => l.msg === LIMIT_MSG)).toHaveLength(0);
    } finally {
      await mesh.close();
    }
  }, 20_000);

  it('a reload applies a new maxOnDemand and idleTimeout (result ok, nothing left for a restart)', async () => {
    const input = (watch: Record<string, unknown>): ConfigInput => ({
      ...base(watch),
      listeners: { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } },
    });
    const file = writeConfig(input({ maxOnDemand: 1 }));
    const daemon = await Daemon.start(validateConfig(input({ maxOnDemand: 1 })), {
      logger: createLogger('silent'),
      configFile: file,
      processMetrics: false,
    });
    try {
      const a = daemon.addresses();
      const outbound = `http://127.0.0.1:${a.outbound.port}`;
      await within(5000, () => ready(`http://127.0.0.1:${a.admin.port}`), 'ready');
      await within(3000, async () => (await statusOf(outbound, 'alpha')) === 200, 'alpha routed');
      expect(await statusOf(outbound, 'beta')).toBe(404);
      writeFileSync(file, stringify(input({ maxOnDemand: 3, idleTimeout: '300ms' })));
      expect(await daemon.reload()).toBe(true);
      expect(await statusOf(outbound, 'beta')).toBe(200);
      expect(await statusOf(outbound, 'gamma')).toBe(200);
      // The default idleTimeout (5 m) was running; the reloaded 300 ms removes the unused ones.
      await within(
        3000,
        () => !['alpha', 'beta', 'gamma'].some((n) => daemon.table.has(n)),
        'idle upstreams removed after the reload',
      );
      const doc = (await (await request(`http://127.0.0.1:${a.admin.port}/config`)).body.json()) as {
        lastReload?: { result?: string; notApplied?: string[] };
      };
      expect(doc.lastReload).toMatchObject({ result: 'ok' });
    } finally {
      await daemon.shutdown('test');
    }
  }, 20_000);
});
