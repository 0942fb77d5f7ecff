// Discovery through blocking queries: a change in Consul moves traffic within 1 s; unknown names are no_route.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConsulDouble } from '../consul-double/consul-double.ts';
import type { InProcessMeshlet } from '../helpers/meshlet.ts';
import type { TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, startUsersOrdersMesh, type UsersOrdersMesh, via, within } from './consul-helpers.ts';

describe('Consul discovery', () => {
  let fixture: UsersOrdersMesh;
  let double: ConsulDouble;
  let a: TestUpstream;
  let b: TestUpstream;
  let c: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    fixture = await startUsersOrdersMesh();
    ({ double, a, b, c, mesh } = fixture);
  });
  afterAll(async () => {
    await fixture?.close();
  });

  it('routes a configured upstream to the instances Consul lists', async () => {
    expect(await via(mesh.outbound, 'users')).toBe(String(a.port));
    const ready = await adminGet<{ checks: Record<string, { ok: boolean; detail: string }> }>(
      mesh.admin,
      '/ready',
    );
    expect(ready.body.checks.registry).toEqual({ ok: true, detail: 'synced' });
    expect(ready.body.checks.consul?.detail).toBe('reachable');
  });

  it('an endpoint added in Consul gets traffic within 1 s (measured)', async () => {
    const started = performance.now();
    double.addInstance({ service: 'users', id: 'users-b', port: b.port });
    const seen = new Set<string>();
    await within(
      1000,
      async () => {
        seen.add(await via(mesh.outbound, 'users'));
        return seen.has(String(b.port));
      },
      'new endpoint in rotation',
    );
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('an endpoint turned critical stops getting traffic within 1 s (measured)', async () => {
    const started = performance.now();
    double.setInstanceStatus('users-b', 'critical', 'HTTP GET: 500');
    // Two answers in a row from a only (round robin over the remaining endpoint).
    let streak = 0;
    await within(
      1000,
      async () => {
        streak = (await via(mesh.outbound, 'users')) === String(a.port) ? streak + 1 : 0;
        return streak >= 2;
      },
      'critical endpoint out of rotation',
    );
    expect(performance.now() - started).toBeLessThan(1000);
    for (let i = 0; i < 10; i++) expect(await via(mesh.outbound, 'users')).toBe(String(a.port));
  });

  it('a warning instance is out of rotation too (?passing), and passing again brings it back', async () => {
    double.setInstanceStatus('users-b', 'warning', 'slow');
    for (let i = 0; i < 4; i++) expect(await via(mesh.outbound, 'users')).toBe(String(a.port));
    double.setInstanceStatus('users-b', 'passing');
    const seen = new Set<string>();
    await within(
      1000,
      async () => {
        seen.add(await via(mesh.outbound, 'users'));
        return seen.has(String(b.port));
      },
      'passing again',
    );
  });

  it('an endpoint removed from Consul stops getting traffic within 1 s (measured)', async () => {
    const started = performance.now();
    double.removeInstance('users-a');
    let streak = 0;
    await within(
      1000,
      async () => {
        streak = (await via(mesh.outbound, 'users')) === String(b.port) ? streak + 1 : 0;
        return streak >= 2;
      },
      'removed endpoint out of rotation',
    );
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('endpoint fields come from the health answer: Service.Address, Weights, tags, meta, transport', async () => {
    double.addInstance({
      service: 'users',
      id: 'users-a2',
      address: '127.0.0.1',
      port: a.port,
      weights: { Passing: 7, Warning: 1 },
      tags: ['v2'],
      meta: { meshlet_inbound: 'mtls' },
    });
    type View = {
      upstreams: Record<
        string,
        { endpoints: { id: string; weight: number; tags: string[]; transport: string }[] }
      >;
    };
    await within(
      1000,
      async () =>
        (await adminGet<View>(mesh.admin, '/upstreams')).body.upstreams.users!.endpoints.length === 2,
      'a2 listed',
    );
    const { body } = await adminGet<View>(mesh.admin, '/upstreams');
    const a2 = body.upstreams.users!.endpoints.find((e) => e.id === `127.0.0.1:${a.port}`);
    expect(a2).toMatchObject({ weight: 7, tags: ['v2'], transport: 'mtls' });
    double.removeInstance('users-a2');
  });

  it('a name not in config is discovered on first use; a name Consul does not have is no_route 404', async () => {
    // The very first request waits for the new watch's first answer instead of failing.
    expect(await via(mesh.outbound, 'orders')).toBe(String(c.port));
    const { body } = await adminGet<{ registry: { watches: Record<string, { kind: string }> } }>(
      mesh.admin,
      '/upstreams',
    );
    expect(body.registry.watches.orders?.kind).toBe('on_demand');
    expect(body.registry.watches.users?.kind).toBe('configured');
    for (let i = 0; i < 5; i++) expect(await via(mesh.outbound, `nosuch${i}`)).toBe('status 404');
    const after = await adminGet<{ registry: { watches: Record<string, unknown> } }>(
      mesh.admin,
      '/upstreams',
    );
    expect(Object.keys(after.body.registry.watches).sort()).toEqual(['orders', 'users']);
  });

  it('the index going backwards (snapshot restore) is handled: changes keep arriving', async () => {
    // As after a snapshot restore: the watches are blocked when the index moves back.
    await double.waitFor((d) => d.blockedQueries >= 3, 2000, 'users, orders and catalog watches blocked');
    double.resetIndex(1);
    double.addInstance({ service: 'users', id: 'users-c', port: c.port });
    const seen = new Set<string>();
    await within(
      1000,
      async () => {
        seen.add(await via(mesh.outbound, 'users'));
        return seen.has(String(c.port));
      },
      'change after index reset',
    );
    double.removeInstance('users-c');
  });
});
