// Two instances sharing a service ID in etcd or Redis (cluster-wide stores): neither writes over, keeps alive or deletes the other's key.
import { beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import type { TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, metric, within } from '../consul/consul-helpers.ts';
import { holderGraceMs, type Kv, etcdKv, redisKv } from './kv-backends.ts';
import { SIDE_BY_SIDE } from '../consul/service-id-fixtures.ts';
import { kvServiceIdFixture } from './kv-service-id-fixtures.ts';

const INTERVAL = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each([
  ['etcd', etcdKv],
  ['redis', redisKv],
] as const)('%s: two instances with the same service ID', SIDE_BY_SIDE, (name, make) => {
  const fx = kvServiceIdFixture(name, make, { interval: INTERVAL, timeout: 150 });
  const { web, stop, keys, logsAt, registration, RENAMED, REFUSED, started } = fx;
  let kv: Kv;
  let app: TestUpstream;
  /** The default ID every instance here would take: `web-<hostname>-<app port>`. */
  let defaultId: string;
  beforeAll(() => {
    ({ kv, app, defaultId } = fx);
  });
  /** How long a key held at another address is watched before it is called another live instance's. */
  const GRACE = holderGraceMs(name, INTERVAL);

  const errors = (m: InProcessMeshlet) => logsAt(m, 'error');

  it('the second writes a distinct key; both are discovered; one error, counted; neither shutdown touches the other key', async () => {
    const a = await web('127.0.0.1', {}, 600);
    await within(3000, async () => (await keys()).length === 1, 'a registered');
    const b = await web('127.0.0.2');
    const bId = `${defaultId}-127.0.0.2`;
    const both = [`${defaultId}@127.0.0.1 passing`, `${bId}@127.0.0.2 passing`].sort();
    await within(3000, async () => (await keys()).length === 2, 'b registered under a distinct ID');

    // Past one TTL: neither replaced the other, and each key is kept alive.
    await sleep(2500);
    expect(await keys()).toEqual(both);
    const caller = await startMeshlet({
      registry: kv.registry(),
      upstreams: { web: {} },
      accessLog: { enabled: false },
    });
    started.push(caller);
    const endpoints = async (): Promise<string[]> => {
      const v = await adminGet<{ upstreams: Record<string, { endpoints: { id: string }[] }> }>(
        caller.admin,
        '/upstreams',
      );
      return (v.body.upstreams.web?.endpoints ?? []).map((e) => e.id).sort();
    };
    await within(3000, async () => (await endpoints()).length === 2, 'the caller discovers both');
    expect(await endpoints()).toEqual([`127.0.0.1:${app.port}`, `127.0.0.2:${app.port}`]);

    // One error line from b, naming both instances and the key that fixes it; none from a. Called a
    // collision once a's key stayed alive through b's watch (one TTL and one interval).
    await within(GRACE + 3000, () => errors(b).length > 0, 'the collision called');
    expect(errors(b)).toHaveLength(1);
    expect(errors(b)[0]).toMatchObject({
      heldId: defaultId,
      heldBy: `127.0.0.1:${app.port}`,
      serviceId: bId,
      instance: `127.0.0.2:${app.port}`,
    });
    expect(String(errors(b)[0]!.msg)).toContain('registry.serviceId');
    expect(errors(a)).toEqual([]);
    expect(await metric(b.admin, RENAMED)).toBe(1);
    expect(await metric(a.admin, RENAMED)).toBe(0);
    expect(await registration(b)).toMatchObject({ serviceId: bId, registered: true, refusedBecause: null });
    expect((await registration(b)).key).toMatch(new RegExp(`${bId}$`));
    expect(await registration(a)).toMatchObject({ serviceId: defaultId, registered: true });

    // a drains (its record critical for 600 ms), then leaves: b's key says b, passing, throughout.
    const seen = new Set<string>();
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const h = (await kv.web())[bId];
        seen.add(h === undefined ? 'absent' : `${h.address} ${h.status}`);
        await sleep(10);
      }
    })();
    await stop(a);
    await sleep(300);
    watching = false;
    await watch;
    expect([...seen]).toEqual(['127.0.0.2 passing']);
    expect(await keys()).toEqual([`${bId}@127.0.0.2 passing`]);
    await stop(b);
    expect(await keys()).toEqual([]);
  }, 30_000);

  it('two instances starting at the same moment: one key each, never the same one', async () => {
    const [a, b] = await Promise.all([web('127.0.0.1'), web('127.0.0.2')]);
    await within(3000, async () => (await keys()).length === 2, 'both registered');
    await sleep(3 * INTERVAL);
    const held = await kv.web();
    expect(Object.keys(held)).toHaveLength(2);
    expect(
      Object.values(held)
        .map((h) => h.address)
        .sort(),
    ).toEqual(['127.0.0.1', '127.0.0.2']);
    const ids = [(await registration(a)).serviceId, (await registration(b)).serviceId];
    expect(new Set(ids).size).toBe(2);
    expect(ids).toContain(defaultId);
    await within(GRACE + 3000, () => errors(a).length + errors(b).length > 0, 'the collision called');
    await sleep(3 * INTERVAL);
    expect(errors(a).length + errors(b).length).toBe(1);
  }, 30_000);

  it('a restart (a key naming this address and port, from an earlier run, still live) is taken over without an error', async () => {
    await kv.put(
      defaultId,
      {
        id: defaultId,
        service: 'web',
        address: '127.0.0.1',
        port: app.port,
        status: 'passing',
        output: 'earlier run',
      },
      10_000,
    );
    const m = await web('127.0.0.1');
    await within(
      3000,
      async () => (await kv.web())[defaultId]?.output.startsWith('TCP connect') === true,
      'taken over',
    );
    expect(await keys()).toEqual([`${defaultId}@127.0.0.1 passing`]);
    expect(errors(m)).toEqual([]);
    expect(await metric(m.admin, RENAMED)).toBe(0);
    expect(await metric(m.admin, REFUSED)).toBe(0);
    await stop(m);
    expect(await keys()).toEqual([]);
  }, 30_000);

  it("another instance's record written over this one's key is left to it (not kept alive, not deleted); this one moves to a distinct ID", async () => {
    const m = await web('127.0.0.1');
    await within(3000, async () => (await keys()).length === 1, 'registered');
    await sleep(2 * INTERVAL);
    // An older meshlet (or a hand edit) writes another instance's record over the key, with a short life.
    const other = {
      id: defaultId,
      service: 'web',
      address: '127.0.0.9',
      port: app.port,
      status: 'passing',
      output: 'other',
    };
    await kv.put(defaultId, other, 2000);
    const moved = `${defaultId}-127.0.0.1`;
    await within(3000, async () => (await kv.web())[moved]?.status === 'passing', 'moved to a distinct ID');
    expect(await keys()).toEqual([`${defaultId}@127.0.0.9 passing`, `${moved}@127.0.0.1 passing`].sort());
    expect(errors(m)).toHaveLength(1);
    expect(errors(m)[0]).toMatchObject({
      heldId: defaultId,
      heldBy: `127.0.0.9:${app.port}`,
      serviceId: moved,
    });
    // Nobody refreshes the other record: it expires with its own lease / TTL (meshlet keeps only its own alive).
    await within(4000, async () => (await kv.web())[defaultId] === undefined, 'the other record expired');
    await sleep(2 * INTERVAL);
    expect(await keys()).toEqual([`${moved}@127.0.0.1 passing`]);
    expect(await registration(m)).toMatchObject({ serviceId: moved, registered: true });
    await stop(m);
    expect(await keys()).toEqual([]);
  }, 30_000);

  it("another instance's record written over this one's key just before its shutdown: the shutdown leaves it", async () => {
    const m = await web('127.0.0.1', {}, 300);
    await within(3000, async () => (await keys()).length === 1, 'registered');
    await sleep(2 * INTERVAL);
    const other = {
      id: defaultId,
      service: 'web',
      address: '127.0.0.9',
      port: app.port,
      status: 'passing',
      output: 'other',
    };
    await kv.put(defaultId, other, 20_000);
    // The drain (the record marked critical, 300 ms) and the deregistration follow at once.
    await stop(m);
    expect((await kv.web())[defaultId]).toEqual({ address: '127.0.0.9', status: 'passing', output: 'other' });
    expect(await keys()).toEqual([`${defaultId}@127.0.0.9 passing`]);
  }, 30_000);

  it('the same registry.serviceId: the second writes nothing (one error, counted) until the first leaves', async () => {
    const a = await web('127.0.0.1', { serviceId: 'web-shared' });
    await within(3000, async () => (await keys()).length === 1, 'a registered');
    const b = await web('127.0.0.2', { serviceId: 'web-shared' });
    await within(GRACE + 3000, () => errors(b).length > 0, 'b refused');
    await sleep(5 * INTERVAL);
    expect(await keys()).toEqual(['web-shared@127.0.0.1 passing']);
    expect(errors(b)).toHaveLength(1);
    expect(errors(b)[0]).toMatchObject({
      serviceId: 'web-shared',
      heldBy: `127.0.0.1:${app.port}`,
      instance: `127.0.0.2:${app.port}`,
    });
    expect(String(errors(b)[0]!.msg)).toContain('registry.serviceId');
    expect(await metric(b.admin, REFUSED)).toBe(1);
    const refused = await registration(b);
    expect(refused.registered).toBe(false);
    expect(refused.refusedBecause).toMatch(
      /another instance \(127\.0\.0\.1:\d+\) holds service ID web-shared/,
    );
    expect(await metric(b.admin, `meshlet_registry_${name}_up`)).toBe(1);

    // The holder leaves (its key deleted at shutdown): b registers within a few check intervals.
    await stop(a);
    await within(3000, async () => (await keys())[0] === 'web-shared@127.0.0.2 passing', 'b registered');
    expect(errors(b)).toHaveLength(1);
    await stop(b);
    expect(await keys()).toEqual([]);
  }, 30_000);
});
