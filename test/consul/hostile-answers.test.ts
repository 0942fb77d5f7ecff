// Hostile Consul answers (wrong shape, not JSON, malformed entries, no index, oversized): the watches go on and keep the last good endpoints.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulAnswerError, ConsulClient } from '../../src/registry/consul/consul-client.ts';
import { ConsulDouble, type Tampering } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  adminGet,
  consulRegistry,
  metric,
  startUsersOrdersMesh,
  type UsersOrdersMesh,
  via,
  within,
} from './consul-helpers.ts';

interface UpstreamsView {
  registry: { watches: Record<string, { lastError: string | null }> };
  upstreams: Record<string, { endpoints: { id: string }[] }>;
}

/** The endpoint ids meshlet holds for `upstream`. */
async function endpointIds(admin: string, upstream: string): Promise<string[]> {
  const view = await adminGet<UpstreamsView>(admin, '/upstreams');
  return (view.body.upstreams[upstream]?.endpoints ?? []).map((e) => e.id).sort();
}

/** One health entry as Consul writes it, for `users` on 127.0.0.1:`port`. */
function entry(id: string, port: unknown): Record<string, unknown> {
  return {
    Node: { Node: 'n1', Address: '127.0.0.1' },
    Service: { ID: id, Service: 'users', Address: '127.0.0.1', Port: port, Tags: [], Meta: {} },
    Checks: [{ CheckID: `service:${id}`, Status: 'passing' }],
  };
}

describe('hostile Consul answers', () => {
  let fixture: UsersOrdersMesh;
  let double: ConsulDouble;
  let a: TestUpstream;
  let b: TestUpstream;
  let c: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    fixture = await startUsersOrdersMesh({ jitter: false }, { watch: { wait: '2s' } });
    ({ double, a, b, c, mesh } = fixture);
  });
  afterAll(async () => {
    await fixture?.close();
  });

  const wrongShapes: [string, Tampering][] = [
    ['null', { body: 'null' }],
    ['an object', { body: '{"Service":{"Port":1}}' }],
    ['a number', { body: '42' }],
    ['cut JSON', { body: '[{"Service":' }],
    ['text/plain', { body: 'No cluster leader', contentType: 'text/plain; charset=utf-8' }],
    ['an empty body', { body: '' }],
    ['entries that are not instances', { body: JSON.stringify([null, 7, { Node: {} }, entry('x', 70000)]) }],
  ];

  it.each(wrongShapes)(
    'a health answer that is %s is refused: the endpoints stay, the watch goes on, it is logged and counted',
    async (what, tampering) => {
      const id = `users-b-${what.replaceAll(' ', '-')}`;
      const refusedBefore = await metric(mesh.admin, 'meshlet_registry_consul_invalid_total{kind="answer"}');
      const snapshotsBefore = await metric(mesh.admin, 'meshlet_registry_consul_snapshots_total');
      double.setTampering({ path: '/v1/health/service/users', times: 1, ...tampering });
      // The change wakes the blocked read: its answer is the hostile one; the retry gets the real one.
      double.addInstance({ service: 'users', id, port: b.port });
      await within(5000, async () => (await endpointIds(mesh.admin, 'users')).length === 2, 'b applied');
      expect(double.faults.tampering).toBe(false);
      expect(await endpointIds(mesh.admin, 'users')).toEqual(
        [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`].sort(),
      );
      // One snapshot ({a, b}); the refused answer applied nothing, so a was never dropped.
      expect((await metric(mesh.admin, 'meshlet_registry_consul_snapshots_total')) - snapshotsBefore).toBe(1);
      expect(
        (await metric(mesh.admin, 'meshlet_registry_consul_invalid_total{kind="answer"}')) - refusedBefore,
      ).toBe(1);
      const warned = mesh.logs.filter(
        (l) =>
          l.msg === 'refused an unusable Consul answer; keeping the last endpoints' && l.upstream === 'users',
      );
      expect(warned.length).toBeGreaterThan(0);
      expect(String(warned.at(-1)!.reason)).toMatch(/unusable answer from Consul/);
      double.removeInstance(id);
      await within(5000, async () => (await endpointIds(mesh.admin, 'users')).length === 1, 'b removed');
      expect(await via(mesh.outbound, 'users')).toBe(String(a.port));
    },
  );

  it('malformed entries are skipped and counted; the well-formed ones are applied', async () => {
    const skippedBefore = await metric(mesh.admin, 'meshlet_registry_consul_invalid_total{kind="entry"}');
    double.setTampering({
      path: '/v1/health/service/users',
      times: 1,
      body: JSON.stringify([
        entry('users-a', a.port),
        entry('users-b', b.port),
        entry('bad-port', '8080'),
        entry('too-big', 70000),
        { Node: { Node: 'n2', Address: '127.0.0.1' } },
      ]),
    });
    double.addInstance({ service: 'users', id: 'users-wake', port: 1 });
    await within(5000, () => double.faults.tampering === false, 'tampered answer sent');
    await within(5000, async () => (await endpointIds(mesh.admin, 'users')).length >= 2, 'applied');
    expect(
      (await metric(mesh.admin, 'meshlet_registry_consul_invalid_total{kind="entry"}')) - skippedBefore,
    ).toBe(3);
    const warned = mesh.logs.filter((l) => l.msg === 'skipping malformed entries of a Consul health answer');
    expect(warned.at(-1)).toMatchObject({ upstream: 'users', skipped: 3, of: 5 });
    double.removeInstance('users-wake');
    await within(5000, async () => (await endpointIds(mesh.admin, 'users')).length === 1, 'back to a');
  });

  it('answers without X-Consul-Index (a proxy that strips it) still carry every change', async () => {
    double.setTampering({ path: '/v1/health/service/users', index: null });
    try {
      double.addInstance({ service: 'users', id: 'users-b', port: b.port });
      await within(5000, async () => (await endpointIds(mesh.admin, 'users')).length === 2, 'b added');
      double.removeInstance('users-b');
      await within(5000, async () => (await endpointIds(mesh.admin, 'users')).length === 1, 'b removed');
      double.setInstanceStatus('users-a', 'critical', 'down');
      await within(5000, async () => (await endpointIds(mesh.admin, 'users')).length === 0, 'a critical');
    } finally {
      double.setTampering(null);
      double.setInstanceStatus('users-a', 'passing');
    }
    await within(5000, async () => (await endpointIds(mesh.admin, 'users')).length === 1, 'a back');
  });

  it('a catalog answer of the wrong shape does not drop on-demand upstreams (no no_route)', async () => {
    expect(await via(mesh.outbound, 'orders')).toBe(String(c.port));
    for (const body of ['[]', 'null', '"consul"']) {
      double.setTampering({ path: '/v1/catalog/services', times: 1, body });
      // A new service changes the catalog: the blocked catalog read wakes with the hostile answer.
      double.addInstance({ service: `other-${body.length}`, id: `other-${body.length}`, port: 1 });
      await within(5000, () => double.faults.tampering === false, 'tampered catalog answer sent');
      await new Promise((r) => setTimeout(r, 100));
      expect(await via(mesh.outbound, 'orders')).toBe(String(c.port));
    }
  });
});

describe('answer size cap', () => {
  it('an answer over maxAnswerBytes is refused, not buffered; a normal one passes', async () => {
    const double = new ConsulDouble();
    await double.start();
    const client = new ConsulClient({ address: double.url, maxAnswerBytes: 1024 * 1024 });
    try {
      double.addInstance({ service: 'users', id: 'users-a', port: 1234 });
      const options = { index: 0, waitMs: 1000, signal: new AbortController().signal };
      const ok = await client.healthService('users', [], options);
      expect(ok.value).toHaveLength(1);
      expect(ok.index).toBeGreaterThan(0);
      for (const t of [{ bodyBytes: 4 * 1024 * 1024 }, { bodyBytes: 4 * 1024 * 1024, chunked: true }]) {
        double.setTampering({ path: '/v1/health/service/users', times: 1, ...t });
        const err = await client.healthService('users', [], options).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConsulAnswerError);
        expect(String(err)).toMatch(/over the 1048576-byte cap/);
        expect(double.faults.tampering).toBe(false);
      }
      // The client still works after dropping those connections.
      expect((await client.healthService('users', [], options)).value).toHaveLength(1);
    } finally {
      await client.close();
      await double.stop();
    }
  });
});

describe('a registration Consul refuses (403)', () => {
  it('is logged once as a refusal, counted, shown in status, never called an unreachable agent; retried until accepted', async () => {
    const double = new ConsulDouble();
    await double.start();
    const app = await startUpstream();
    let mesh: InProcessMeshlet | undefined;
    try {
      double.addInstance({ service: 'users', id: 'users-a', port: app.port });
      double.setTampering({
        path: '/v1/agent/service/register',
        refuse: true,
        status: 403,
        body: 'Permission denied: token with AccessorID lacks permission "service:write" on "web"',
      });
      mesh = await startMeshlet({
        service: { name: 'web', port: app.port, address: '127.0.0.1' },
        registry: consulRegistry(double, {
          serviceId: 'web-1',
          check: { interval: 100, timeout: 50 },
          watch: { wait: '200ms' },
        }),
        upstreams: { users: {} },
        shutdown: { drainDelay: 0 },
        accessLog: { enabled: false },
      });
      const m = mesh;
      const refusals = 'meshlet_registry_consul_errors_total{operation="register"}';
      await within(3000, async () => (await metric(m.admin, refusals)) >= 5, 'five refused registrations');
      expect(m.logs.filter((l) => String(l.msg).startsWith('Consul agent unreachable'))).toEqual([]);
      const refused = m.logs.filter(
        (l) => l.msg === 'Consul refused this instance; retrying every check interval',
      );
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({ operation: 'register', status: 403, serviceId: 'web-1' });
      expect(await metric(m.admin, 'meshlet_registry_consul_up')).toBe(1);
      const view = await adminGet<{ registry: { registration: Record<string, unknown> } }>(
        m.admin,
        '/upstreams',
      );
      expect(view.body.registry.registration).toMatchObject({ registered: false });
      expect(String(view.body.registry.registration.refusedBecause)).toMatch(/403: Permission denied/);
      double.setTampering(null);
      await double.waitFor(
        (d) => d.checks('web-1')[0]?.status === 'passing',
        3000,
        'registered once allowed',
      );
      await within(
        2000,
        async () => {
          const v = await adminGet<{ registry: { registration: Record<string, unknown> } }>(
            m.admin,
            '/upstreams',
          );
          return (
            v.body.registry.registration.registered === true &&
            v.body.registry.registration.refusedBecause === null
          );
        },
        'status shows the registration',
      );
    } finally {
      await mesh?.close();
      await double.stop();
      await app.close();
    }
  });
});

describe('a sidecar proxy registration Consul refuses', () => {
  it('is logged once per reason (not once per tick) and counted; registered once allowed', async () => {
    const double = new ConsulDouble();
    await double.start();
    const app = await startUpstream();
    let mesh: InProcessMeshlet | undefined;
    try {
      double.setTampering({
        path: '/v1/agent/service/register',
        requestBodyContains: '"Kind":"connect-proxy"',
        refuse: true,
        status: 400,
        body: 'Invalid Proxy configuration',
      });
      mesh = await startMeshlet({
        service: { name: 'web', port: app.port, address: '127.0.0.1' },
        listeners: { inbound: { address: '127.0.0.1', port: 0 } },
        registry: consulRegistry(double, { serviceId: 'web-1', check: { interval: 100, timeout: 50 } }),
        tls: { source: 'consul' },
        shutdown: { drainDelay: 0 },
        accessLog: { enabled: false },
      } as never);
      const m = mesh;
      await double.waitFor((d) => d.checks('web-1')[0]?.status === 'passing', 3000, 'service registered');
      const failed = 'meshlet_registry_consul_errors_total{operation="register"}';
      await within(
        3000,
        async () => (await metric(m.admin, failed)) >= 5,
        'five refused sidecar registrations',
      );
      const warned = m.logs.filter((l) => String(l.msg).startsWith('sidecar proxy registration failed'));
      expect(warned).toHaveLength(1);
      expect(String(warned[0]!.reason)).toMatch(/400: Invalid Proxy configuration/);
      expect(double.instances('web-sidecar-proxy')).toEqual([]);
      double.setTampering(null);
      await double.waitFor((d) => d.instances('web-sidecar-proxy').length === 1, 3000, 'sidecar registered');
    } finally {
      await mesh?.close();
      await double.stop();
      await app.close();
    }
  });
});

describe('health answers filtered by ACLs', () => {
  it('are applied, and logged once per upstream as filtered (the token may not read every instance)', async () => {
    const double = new ConsulDouble({ acl: { defaultPolicy: 'deny', tokens: { 'write-token': 'write' } } });
    await double.start();
    let mesh: InProcessMeshlet | undefined;
    try {
      double.addInstance({ service: 'users', id: 'users-a', port: 1234 });
      mesh = await startMeshlet({
        registry: consulRegistry(double, { watch: { wait: '100ms' } }),
        upstreams: { users: {} },
        accessLog: { enabled: false },
        shutdown: { drainDelay: 0 },
      });
      const m = mesh;
      const healthReads = (): number =>
        double.requests.filter((q) => q.path === '/v1/health/service/users').length;
      await within(3000, () => healthReads() >= 4, 'four health answers');
      const warned = m.logs.filter((l) => String(l.msg).startsWith('Consul filtered an upstream'));
      expect(warned).toHaveLength(1);
      expect(warned[0]).toMatchObject({ upstream: 'users', acl: 'no token' });
      expect(await endpointIds(m.admin, 'users')).toEqual([]);
    } finally {
      await mesh?.close();
      await double.stop();
    }
  });
});
