// Thousands of endpoints that come and go through Consul leave no pool, socket, handle or series behind (regression guard).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Agent, request } from 'undici';
import { expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { startMeshlet } from '../helpers/meshlet.ts';
import { samplesMatching } from '../helpers/metrics.ts';
import { closedPort, startUpstream } from '../helpers/upstream-server.ts';
import { adminGet, consulRegistry, within } from '../consul/consul-helpers.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

it(
  'endpoint churn: departed endpoints keep no pool, socket, balancer or outlier state, nor series',
  { timeout: 20_000 },
  async () => {
    const double = new ConsulDouble();
    await double.start();
    const live = await Promise.all(
      Array.from({ length: 20 }, () =>
        startUpstream((req, res) => {
          req.resume();
          req.on('end', () => res.end('ok'));
        }),
      ),
    );
    const dead = await closedPort();
    const mesh = await startMeshlet({
      registry: consulRegistry(double),
      upstreams: {
        users: { loadBalancer: 'least_request', retries: { attempts: 3 } },
        orders: { loadBalancer: 'ring_hash', hashOn: { header: 'x-k' } },
        ewma: { loadBalancer: 'peak_ewma' },
      },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    const client = new Agent({ connections: 50 });
    const refs: WeakRef<object>[] = [];
    // The series (sample lines without their values) of one scrape.
    const seriesNow = async () =>
      new Set((await samplesMatching(mesh.admin)).map((l) => l.replace(/ \S+$/, '')));
    try {
      await within(3000, async () => (await adminGet(mesh.admin, '/ready')).status === 200, 'ready');
      let baseline = new Set<string>();
      const rounds = 20;
      for (let r = 0; r < rounds; r++) {
        const ids: string[] = [];
        for (const svc of ['users', 'orders', 'ewma']) {
          for (let i = 0; i < live.length; i++) {
            const id = `${svc}-l-${r}-${i}`;
            double.addInstance({ service: svc, id, address: '127.0.0.1', port: live[i]!.port });
            ids.push(id);
          }
          for (let i = 0; i < 20; i++) {
            const id = `${svc}-d-${r}-${i}`;
            double.addInstance({ service: svc, id, address: `127.${r % 250}.${i}.2`, port: dead });
            ids.push(id);
          }
        }
        await within(3000, () => mesh.daemon.table.get('users')!.endpoints.length >= 40, 'users synced');
        await within(3000, () => mesh.daemon.table.get('ewma')!.endpoints.length >= 40, 'ewma synced');
        for (const svc of ['users', 'orders', 'ewma']) {
          const u = mesh.daemon.table.get(svc)!;
          for (const h of u.endpoints) {
            refs.push(new WeakRef(h));
            const p = u.poolOf(h);
            if (p) refs.push(new WeakRef(p));
          }
        }
        await Promise.all(
          Array.from({ length: 60 }, async (_, k) => {
            const res = await request(`${mesh.outbound}/`, {
              dispatcher: client,
              headers: { host: ['users', 'orders', 'ewma'][k % 3]!, 'x-k': String(k) },
            });
            await res.body.dump();
          }),
        );
        for (const id of ids) double.removeInstance(id);
        await within(3000, () => mesh.daemon.table.get('users')!.endpoints.length === 0, 'users emptied');
        await within(3000, () => mesh.daemon.table.get('ewma')!.endpoints.length === 0, 'ewma emptied');
        if (r === 1) baseline = await seriesNow();
      }
      // Pools of departed endpoints close their sockets (the endpoints' own count).
      await within(
        3000,
        () => live.every((s) => s.openConnections() === 0),
        'sockets to departed endpoints closed',
      );
      const openSockets = live.reduce((n, s) => n + s.openConnections(), 0);
      // The app's keep-alive connections to meshlet may hold their last exchange (and its endpoint)
      // until their next request: bounded by connections, not by churn. Closed, so nothing does.
      await client.close();
      // Handles and pools of departed endpoints become garbage (no balancer, outlier detector or pool
      // map holds them). Polled: a pool's close settles a few ticks after its last socket.
      const aliveNow = (): number => {
        gc();
        return refs.filter((w) => w.deref() !== undefined).length;
      };
      await within(3000, () => aliveNow() <= 6, 'departed handles and pools collected');
      const alive = aliveNow();
      const added = [...(await seriesNow())].filter((l) => !baseline.has(l));
      // 20 rounds × 3 upstreams × 40 endpoints (20 live, 20 at distinct dead addresses): 2,400 handles and their pools.
      expect(refs.length).toBeGreaterThan(4000);
      expect(openSockets).toBe(0);
      // At most a last one per upstream (V8 may keep the last object a call site saw): never growing with churn.
      expect(alive).toBeLessThanOrEqual(6);
      // A departed endpoint's own series would add 120 a round (2,280 over rounds 2–19). What a
      // loaded machine may add is a few label values of bounded sets (a connect timing out instead of
      // being refused, another ejection kind, a histogram bucket first reached): not churn.
      expect(added.length, added.join('\n')).toBeLessThanOrEqual(20);
    } finally {
      if (!client.closed) await client.close();
      await mesh.close();
      await double.stop();
      await Promise.all(live.map((s) => s.close()));
    }
  },
);
