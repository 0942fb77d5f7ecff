// Service names that come and go (Consul catalog churn, caller-chosen names) leave no upstream, watch or metric series behind.
import { Client, request } from 'undici';
import { describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { startMeshlet } from '../helpers/meshlet.ts';
import { samplesMatching } from '../helpers/metrics.ts';
import { startUpstream } from '../helpers/upstream-server.ts';
import { adminGet, consulRegistry, metric, via, within } from '../consul/consul-helpers.ts';

/** GETs `Host: name` with a short deadline (so a first-snapshot wait is short too); the status. */
async function statusOf(outbound: string, name: string): Promise<number> {
  const res = await request(`${outbound}/`, { headers: { host: name, 'x-meshlet-timeout-ms': '200' } });
  await res.body.dump();
  return res.statusCode;
}

describe('on-demand upstreams under churn (Consul)', () => {
  it('services that join, serve and leave the catalog leave no series, upstream or watch', async () => {
    const double = new ConsulDouble();
    await double.start();
    const app = await startUpstream();
    const mesh = await startMeshlet({
      // A service: the Consul UI series (one row per upstream) are exported too.
      service: { name: 'web', port: app.port },
      registry: consulRegistry(double, { register: false, watch: { maxOnDemand: 20 } }),
      upstreams: { users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    try {
      await within(3000, async () => (await adminGet(mesh.admin, '/ready')).status === 200, 'ready');
      const churn = async (from: number, to: number): Promise<void> => {
        for (let i = from; i < to; i++) {
          const name = `churn${i}`;
          double.addInstance({ service: name, id: `${name}-1`, port: app.port });
          await within(2000, async () => (await via(mesh.outbound, name)) === String(app.port), name);
          double.removeInstance(`${name}-1`);
        }
        await within(
          3000,
          () => [...mesh.daemon.table.values()].length === 1,
          'only users left in the table',
        );
      };
      // A few first, so the baseline holds what any traffic creates once (retry reasons, ...).
      await churn(0, 5);
      const baseline = (await samplesMatching(mesh.admin, /./)).length;
      await churn(5, 80);
      // Each left the catalog: its upstream, watch and every series labelled with it are gone.
      await within(
        3000,
        async () => (await samplesMatching(mesh.admin, /churn\d+/)).length === 0,
        'series of departed upstreams dropped',
      );
      expect(await metric(mesh.admin, 'meshlet_registry_consul_watches{kind="on_demand"}')).toBe(0);
      // What stays is bounded by what config names, not by how many names came and went.
      expect((await samplesMatching(mesh.admin, /./)).length).toBe(baseline);
      // The configured upstream's series were not touched.
      expect((await samplesMatching(mesh.admin, /upstream="users"/)).length).toBeGreaterThan(0);
    } finally {
      await mesh.close();
      await double.stop();
      await app.close();
    }
  }, 20_000);

  it('random names while the catalog is not known yet are capped and leave nothing once their watches stop', async () => {
    // Consul down from the start: every name gets the benefit of the doubt (an on-demand watch).
    const double = new ConsulDouble();
    await double.start();
    const url = double.url;
    await double.stop();
    const mesh = await startMeshlet({
      registry: {
        type: 'consul',
        consul: { address: url },
        watch: { idleTimeout: '500ms', maxOnDemand: 20 },
      },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    try {
      for (let round = 0; round < 4; round++) {
        const statuses = await Promise.all(
          Array.from({ length: 30 }, (_, i) => statusOf(mesh.outbound, `rnd${round}x${i}`)),
        );
        // At most maxOnDemand names are watched (503: no answer yet); the rest get 404 no_route.
        expect(statuses.filter((s) => s === 503).length).toBeLessThanOrEqual(20);
        expect(statuses.filter((s) => s === 404).length).toBeGreaterThanOrEqual(10);
        expect([...mesh.daemon.table.values()].length).toBeLessThanOrEqual(20);
        // Idle watches stop, and the cap frees for the next round.
        await within(
          3000,
          async () => (await metric(mesh.admin, 'meshlet_registry_consul_watches{kind="on_demand"}')) === 0,
          'idle watches stopped',
        );
      }
      await within(2000, () => [...mesh.daemon.table.values()].length === 0, 'no upstream left');
      await within(
        2000,
        async () => (await samplesMatching(mesh.admin, /rnd\d+x\d+/)).length === 0,
        'no series of a random name left',
      );
    } finally {
      await mesh.close();
    }
  }, 20_000);

  it('names no catalog lists create nothing at all (regression guard)', async () => {
    const double = new ConsulDouble();
    await double.start();
    const mesh = await startMeshlet({
      registry: consulRegistry(double),
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    try {
      await within(3000, async () => (await adminGet(mesh.admin, '/ready')).status === 200, 'ready');
      // One refusal first: the unrouted series (upstream="") exist from then on.
      expect(await statusOf(mesh.outbound, 'first-unknown')).toBe(404);
      const baseline = (await samplesMatching(mesh.admin, /./)).length;
      for (let i = 0; i < 500; i++) {
        const name = `x${i}-${Math.random().toString(36).slice(2, 10)}`;
        // Host header, absolute-form URL and path: each names a destination the catalog lacks.
        expect(await statusOf(mesh.outbound, name)).toBe(404);
      }
      const client = new Client(mesh.outbound);
      try {
        const abs = await client.request({
          method: 'GET',
          path: 'http://nosuch-abs/v1',
          headers: { host: 'nosuch-abs' },
        });
        await abs.body.dump();
        expect(abs.statusCode).toBe(404);
      } finally {
        await client.close();
      }
      expect([...mesh.daemon.table.values()].length).toBe(0);
      expect(await metric(mesh.admin, 'meshlet_registry_consul_watches{kind="on_demand"}')).toBe(0);
      expect(await samplesMatching(mesh.admin, /upstream="x\d+/)).toEqual([]);
      // The refusals are counted under upstream="" (no per-name series).
      expect((await samplesMatching(mesh.admin, /./)).length).toBe(baseline);
    } finally {
      await mesh.close();
      await double.stop();
    }
  }, 20_000);
});
