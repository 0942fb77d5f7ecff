// etcd and redis acceptance: a SIGKILLed meshlet's key gone within TTL + 1 s, 1,000 requests across a backend restart, bad values and bad credentials.
import { Etcd3 } from 'etcd3';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { metric, via, within } from '../consul/consul-helpers.ts';
import { etcdCatalogKv, type CatalogKv as Kv, redisCatalogKv } from './kv-catalogs.ts';
import { EtcdServer, RedisServer } from './servers.ts';

const peer = (port: number): string =>
  JSON.stringify({ address: '127.0.0.1', port, weight: 1, status: 'passing' });

// The two backends (and the credentials suite below) run side by side; each backend's cases one after another
// (the restart case restarts the backend under the others).
describe.concurrent.each([
  ['etcd', etcdCatalogKv],
  ['redis', redisCatalogKv],
] as const)('%s registry faults', (_name, make) => {
  let kv: Kv;
  let a: TestUpstream;
  let b: TestUpstream;

  beforeAll(async () => {
    kv = await make();
    [a, b] = await Promise.all([startUpstream(), startUpstream()]);
  }, 30_000);
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await kv?.close();
  });

  it(
    'a SIGKILLed registered meshlet: its key is gone within TTL + 1 s and callers stop routing to it',
    { concurrent: false, timeout: 30_000 },
    async () => {
      const app = await startUpstream();
      const proc = await spawnMeshlet({
        service: { name: 'victim', port: app.port, address: '127.0.0.1' },
        registry: kv.registry({ check: { interval: '200ms', timeout: '100ms' } }),
        accessLog: { enabled: false },
      });
      const caller = await startMeshlet({
        registry: kv.registry(),
        upstreams: { victim: {} },
        accessLog: { enabled: false },
      });
      try {
        await within(
          5000,
          async () => (await via(caller.outbound, 'victim')) === String(app.port),
          'routed to it',
        );
        const killedAt = performance.now();
        proc.proc.kill('SIGKILL');
        await proc.exited;
        await within(3000, async () => (await kv.keys('victim')).length === 0, 'key gone');
        await within(
          3000 - (performance.now() - killedAt),
          async () => (await via(caller.outbound, 'victim')) === 'status 503',
          'no route to it',
        );
        expect(performance.now() - killedAt).toBeLessThan(3000);
      } finally {
        await caller.close();
        await app.close();
      }
    },
  );

  it(
    'an instance whose heartbeat stops disappears within TTL + 1 s',
    { concurrent: false, timeout: 30_000 },
    async () => {
      const caller = await startMeshlet({
        registry: kv.registry(),
        upstreams: { stale: {} },
        accessLog: { enabled: false },
      });
      try {
        const wrote = performance.now();
        await kv.put('stale', 'x', peer(a.port), 2000);
        await within(1000, async () => (await via(caller.outbound, 'stale')) === String(a.port), 'routed');
        await within(
          3000 - (performance.now() - wrote),
          async () => (await via(caller.outbound, 'stale')) === 'status 503',
          'gone',
        );
        expect(performance.now() - wrote).toBeLessThan(3000);
      } finally {
        await caller.close();
      }
    },
  );

  it(
    'a restarted backend: 0 failed requests in 1,000 across it, registration restored, watches resume',
    { concurrent: false, timeout: 60_000 },
    async () => {
      await kv.put('users', 'a', peer(a.port));
      const app = await startUpstream();
      const self = await startMeshlet({
        service: { name: 'self', port: app.port, address: '127.0.0.1' },
        registry: kv.registry({ check: { interval: '200ms', timeout: '100ms' } }),
        upstreams: { users: {} },
        accessLog: { enabled: false },
        shutdown: { drainDelay: 0 },
      });
      try {
        await within(3000, async () => (await kv.keys('self')).length === 1, 'registered');
        await within(3000, async () => (await via(self.outbound, 'users')) === String(a.port), 'routed');
        let failed = 0;
        let done = 0;
        const load = (async () => {
          for (let i = 0; i < 1000; i++) {
            const res = await request(`${self.outbound}/`, { headers: { host: 'users' } });
            await res.body.dump();
            if (res.statusCode !== 200) failed++;
            done++;
            if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5));
          }
        })();
        await within(5000, () => done >= 100, 'load running');
        await kv.restart(false);
        // What the peer's own meshlet would do within ttl/3 (redis restarted empty).
        await kv.put('users', 'a', peer(a.port));
        await load;
        expect(done).toBe(1000);
        expect(failed).toBe(0);
        // Registration restored (redis lost the key; etcd kept it under the lease).
        await within(5000, async () => (await kv.keys('self')).length === 1, 'registration restored');
        // The watch resumed: a change after the restart reaches routing.
        await kv.put('users', 'b', peer(b.port));
        await within(
          3000,
          async () => (await via(self.outbound, 'users')) === String(b.port),
          'change after restart',
        );
        if (kv.type === 'etcd') {
          // A member restored empty: the lease is unknown, so a new one is granted and the key put again.
          await kv.restart(true);
          await within(
            8000,
            async () => (await kv.keys('self')).length === 1,
            'registration restored after data loss',
          );
          expect(
            await metric(self.admin, 'meshlet_registry_etcd_registrations_total'),
          ).toBeGreaterThanOrEqual(2);
        }
      } finally {
        await self.close();
        await app.close();
      }
    },
  );

  it(
    'a malformed value is skipped with a warning and a metric; the watch goes on',
    { concurrent: false, timeout: 30_000 },
    async () => {
      const caller = await startMeshlet({
        registry: kv.registry(),
        upstreams: { bad: {} },
        accessLog: { enabled: false },
      });
      try {
        await kv.put('bad', 'ok', peer(a.port));
        await within(2000, async () => (await via(caller.outbound, 'bad')) === String(a.port), 'routed');
        await kv.put('bad', 'junk', '{"address": 42');
        await kv.put('bad', 'noport', JSON.stringify({ address: '127.0.0.1' }));
        const name = `meshlet_registry_${kv.type}_invalid_records_total`;
        await within(2000, async () => (await metric(caller.admin, name)) === 2, name);
        expect(
          caller.logs.filter((l) => l.msg === 'skipping a malformed registry record').map((l) => l.reason),
        ).toEqual(['not JSON', 'port: expected an integer in 1..65535']);
        await kv.put('bad', 'b', peer(b.port));
        const seen = new Set<string>();
        await within(
          2000,
          async () => {
            seen.add(await via(caller.outbound, 'bad'));
            return seen.has(String(b.port));
          },
          'a later change applied',
        );
        expect(seen.has('status 503')).toBe(false);
      } finally {
        await caller.close();
      }
    },
  );
});

describe.concurrent('wrong credentials: a clear startup error naming the key', () => {
  let etcd: EtcdServer;
  let redis: RedisServer;
  beforeAll(async () => {
    etcd = new EtcdServer();
    redis = new RedisServer(['--requirepass', 'right-password']);
    await Promise.all([etcd.start(), redis.start()]);
    const client = new Etcd3({ hosts: etcd.url });
    await client.role('root').create();
    await client.user('root').create('right-password');
    await client.user('root').addRole('root');
    await client.auth.authEnable({});
    client.close();
  }, 30_000);
  afterAll(async () => {
    await Promise.all([etcd?.close(), redis?.close()]);
  });

  it('etcd: a wrong password stops meshlet run with registry.etcd.auth named', async () => {
    const file = writeConfig({
      registry: { type: 'etcd', etcd: { hosts: [etcd.url], auth: { username: 'root', password: 'wrong' } } },
      listeners: { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } },
    });
    const { code, stderr } = await runCli(['run', '--config', file]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/registry\.etcd\.auth: etcd refused the credentials/);
  });

  it('redis: a wrong password stops meshlet run with registry.redis.password named', async () => {
    const file = writeConfig({
      registry: { type: 'redis', redis: { url: redis.url, password: 'wrong' } },
      listeners: { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } },
    });
    const { code, stderr } = await runCli(['run', '--config', file]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/registry\.redis\.password: Redis refused the credentials/);
  });
});
