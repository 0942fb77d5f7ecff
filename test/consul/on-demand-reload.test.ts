// A reload applies the Consul registry's registry.watch live: maxOnDemand (raised, lowered, 0 → on, on → 0) and idleTimeout.
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
import { writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { consulRegistry, within } from './consul-helpers.ts';

const LIMIT_MSG = 'on-demand watch limit reached; new upstream names get no_route';

let double: ConsulDouble;
let app: TestUpstream;

beforeAll(async () => {
  double = new ConsulDouble();
  await double.start();
  app = await startUpstream();
  for (const name of ['users', 'alpha', 'beta', 'gamma'])
    double.addInstance({ service: name, id: `${name}-1`, port: app.port });
});
afterAll(async () => {
  await double?.stop();
  await app?.close();
});

/** A meshlet on the double with `users` configured and `watch` as its registry.watch, on a config file it reloads. */
interface ReloadableMesh {
  daemon: Daemon;
  outbound: string;
  admin: string;
  logs: Record<string, unknown>[];
  /** Rewrites the config file with this `registry.watch` and reloads; resolves with `/config`'s lastReload. */
  reload(watch: Record<string, unknown>): Promise<{ result?: string; notApplied?: string[] }>;
  close(): Promise<void>;
}

async function meshWith(watch: Record<string, unknown>): Promise<ReloadableMesh> {
  const input = (w: Record<string, unknown>): ConfigInput => ({
    registry: consulRegistry(double, { watch: w }),
    upstreams: { users: {} },
    listeners: { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } },
    accessLog: { enabled: false },
    shutdown: { drainDelay: 0 },
  });
  const file = writeConfig(input(watch));
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line));
      cb();
    },
  });
  const daemon = await Daemon.start(validateConfig(input(watch)), {
    logger: createLogger('info', sink),
    configFile: file,
    processMetrics: false,
  });
  const a = daemon.addresses();
  const admin = `http://127.0.0.1:${a.admin.port}`;
  await within(5000, async () => (await statusOf(`${admin}/ready`)) === 200, 'first sync');
  return {
    daemon,
    outbound: `http://127.0.0.1:${a.outbound.port}`,
    admin,
    logs,
    async reload(w) {
      writeFileSync(file, stringify(input(w)));
      expect(await daemon.reload()).toBe(true);
      const doc = (await (await request(`${admin}/config`)).body.json()) as {
        lastReload: { result?: string; notApplied?: string[] };
      };
      return doc.lastReload;
    },
    close: () => daemon.shutdown('test'),
  };
}

async function statusOf(url: string, host?: string): Promise<number> {
  const res = await request(url, {
    headers: host === undefined ? {} : { host },
    headersTimeout: 5000,
    bodyTimeout: 5000,
  });
  await res.body.dump();
  return res.statusCode;
}

/** The status of a GET through the outbound listener to upstream `name`, once its first answer came (503 before it). */
async function routed(mesh: ReloadableMesh, name: string): Promise<number> {
  let status = 0;
  await within(
    3000,
    async () => {
      status = await statusOf(`${mesh.outbound}/`, name);
      return status !== 503;
    },
    `${name} answered`,
  );
  return status;
}

type ConsulStatus = { registry: { watches: Record<string, { kind: string }> } };
async function watches(mesh: ReloadableMesh): Promise<Record<string, string>> {
  const body = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as ConsulStatus;
  return Object.fromEntries(Object.entries(body.registry.watches).map(([n, w]) => [n, w.kind]));
}

const catalogReads = () => double.requests.filter((r) => r.path === '/v1/catalog/services').length;

describe('Consul registry.watch on reload', () => {
  it('a raised maxOnDemand holds from the next new name, a lowered one keeps the upstreams over it; a new idleTimeout restarts the sweep', async () => {
    const mesh = await meshWith({ maxOnDemand: 1 });
    try {
      expect(await routed(mesh, 'alpha')).toBe(200);
      expect(await statusOf(`${mesh.outbound}/`, 'beta')).toBe(404);
      expect(mesh.logs.filter((l) => l.msg === LIMIT_MSG)).toHaveLength(1);

      expect(await mesh.reload({ maxOnDemand: 3 })).toMatchObject({ result: 'ok' });
      expect(await routed(mesh, 'beta')).toBe(200);
      expect(await routed(mesh, 'gamma')).toBe(200);
      expect(await watches(mesh)).toEqual({
        users: 'configured',
        alpha: 'on_demand',
        beta: 'on_demand',
        gamma: 'on_demand',
      });

      // Lowered below the three running: they stay (and route), a new name is refused.
      double.addInstance({ service: 'delta', id: 'delta-1', port: app.port });
      expect(await mesh.reload({ maxOnDemand: 1 })).toMatchObject({ result: 'ok' });
      expect(await statusOf(`${mesh.outbound}/`, 'alpha')).toBe(200);
      expect(await statusOf(`${mesh.outbound}/`, 'delta')).toBe(404);
      expect(Object.keys(await watches(mesh)).sort()).toEqual(['alpha', 'beta', 'gamma', 'users']);

      // The running sweep (every 30 s for the default 5 m) is replaced: unused, they go after ~400 ms.
      const reloadedAt = performance.now();
      expect(await mesh.reload({ maxOnDemand: 1, idleTimeout: '400ms' })).toMatchObject({ result: 'ok' });
      await within(3000, async () => Object.keys(await watches(mesh)).length === 1, 'idle watches stopped');
      expect(performance.now() - reloadedAt).toBeGreaterThanOrEqual(350);
      expect(await watches(mesh)).toEqual({ users: 'configured' });
      expect(['alpha', 'beta', 'gamma'].some((n) => mesh.daemon.table.has(n))).toBe(false);
      // Under the lowered cap again: one new name, not two.
      expect(await routed(mesh, 'delta')).toBe(200);
      expect(await statusOf(`${mesh.outbound}/`, 'alpha')).toBe(404);
    } finally {
      await mesh.close();
      double.removeInstance('delta-1');
    }
  }, 30_000);

  it('maxOnDemand from 0 to more starts on-demand discovery (the catalog watch too), /ready staying 200', async () => {
    double.clearRequests();
    const mesh = await meshWith({ maxOnDemand: 0 });
    try {
      expect(await statusOf(`${mesh.outbound}/`, 'alpha')).toBe(404);
      expect(catalogReads()).toBe(0);
      expect(mesh.logs.filter((l) => l.msg === LIMIT_MSG)).toHaveLength(0);

      expect(await mesh.reload({ maxOnDemand: 2 })).toMatchObject({ result: 'ok' });
      expect(await statusOf(`${mesh.admin}/ready`)).toBe(200);
      expect(await routed(mesh, 'alpha')).toBe(200);
      expect(catalogReads()).toBeGreaterThan(0);
      expect(await watches(mesh)).toEqual({ users: 'configured', alpha: 'on_demand' });
      // A name the catalog does not list is still no_route once it answered.
      await within(3000, async () => (await statusOf(`${mesh.outbound}/`, 'nosuch')) === 404, 'no_route');
    } finally {
      await mesh.close();
    }
  }, 30_000);

  it('maxOnDemand down to 0: new names are no_route (no limit warning); running on-demand upstreams stay until idle, then the catalog watch stops', async () => {
    const mesh = await meshWith({ maxOnDemand: 5 });
    try {
      expect(await routed(mesh, 'alpha')).toBe(200);
      expect(await mesh.reload({ maxOnDemand: 0, idleTimeout: '500ms' })).toMatchObject({ result: 'ok' });
      expect(await statusOf(`${mesh.outbound}/`, 'beta')).toBe(404);
      expect(mesh.logs.filter((l) => l.msg === LIMIT_MSG)).toHaveLength(0);
      // Still used: stays.
      for (let i = 0; i < 4; i++) {
        expect(await statusOf(`${mesh.outbound}/`, 'alpha')).toBe(200);
        await new Promise((r) => setTimeout(r, 150));
      }
      expect(await watches(mesh)).toEqual({ users: 'configured', alpha: 'on_demand' });
      // Unused: goes, and with it the catalog watch.
      await within(3000, async () => Object.keys(await watches(mesh)).length === 1, 'alpha idle');
      await within(
        2000,
        () =>
          mesh.logs.some((l) => l.msg === 'on-demand discovery stopped (registry.watch.maxOnDemand is 0)'),
        'discovery stopped',
      );
      const reads = catalogReads();
      await new Promise((r) => setTimeout(r, 300));
      expect(catalogReads()).toBe(reads);
      expect(await statusOf(`${mesh.outbound}/`, 'alpha')).toBe(404);
      expect(await statusOf(`${mesh.admin}/ready`)).toBe(200);
    } finally {
      await mesh.close();
    }
  }, 30_000);
});
