// etcd and Redis: a crashed earlier run's key (a pod re-created at a new address) is written aside at once, then moved from when it expires, not called a collision; a live holder still is.
import { beforeAll, describe, expect, it } from 'vitest';
import type { InProcessMeshlet } from '../helpers/meshlet.ts';
import type { TestUpstream } from '../helpers/upstream-server.ts';
import { metric, within } from '../consul/consul-helpers.ts';
import { expectCollisionCalled, expectMovedQuietly, expectWaitingAside } from '../consul/collision-called.ts';
import { etcdKv, holderGraceMs, type Kv, redisKv } from './kv-backends.ts';
import { SIDE_BY_SIDE } from '../consul/service-id-fixtures.ts';
import { kvServiceIdFixture } from './kv-service-id-fixtures.ts';

const INTERVAL = 200;
/**
 * The lease / key TTL of every meshlet here and of the crashed run before it, ms: long enough that a
 * slow start still finds the predecessor's key alive.
 */
const TTL = 4000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each([
  ['etcd', etcdKv],
  ['redis', redisKv],
] as const)('%s: a key held at another address', SIDE_BY_SIDE, (name, make) => {
  const fx = kvServiceIdFixture(name, make, { interval: INTERVAL, timeout: 150 }, TTL);
  const { web, stop, keys, logsAt, registration, RENAMED, REFUSED } = fx;
  let kv: Kv;
  let app: TestUpstream;
  /** The default ID: `web-<hostname>-<app port>`, the same for a pod and its re-created successor. */
  let defaultId: string;
  beforeAll(() => {
    ({ kv, app, defaultId } = fx);
  });
  /** How long a live-looking holder is watched: one TTL (etcd: and its lease check) and one check interval. */
  const GRACE = holderGraceMs(name, INTERVAL, TTL);

  /**
   * The key a meshlet at `address` left when it crashed (SIGKILL, node eviction): nobody deleted it,
   * and it lives until its lease or TTL, last refreshed just before the crash, runs out.
   */
  async function crashedRun(id: string, address: string, ttlMs = TTL): Promise<void> {
    const record = { id, service: 'web', address, port: app.port, status: 'passing', output: 'crashed run' };
    await kv.put(id, record, ttlMs);
  }

  /** The warning a meshlet logs when it starts watching a live-looking holder. */
  const waitWarnings = (m: InProcessMeshlet) =>
    logsAt(m, 'warn').filter((l) => String(l.msg).includes('has not expired'));

  /**
   * Polls every 10 ms until `done` (rejects after `timeoutMs`); at every poll, `invariant` must hold
   * on the keys read (rejects naming them at the first poll where it does not).
   */
  async function throughout(
    timeoutMs: number,
    done: (k: string[]) => boolean,
    invariant: (k: string[]) => boolean,
    what: string,
  ): Promise<void> {
    const from = performance.now();
    for (let polls = 1; ; polls++) {
      const k = await keys();
      if (!invariant(k)) throw new Error(`${what}: invariant broken at poll ${polls}: ${k.join(', ')}`);
      if (done(k)) return;
      if (performance.now() - from > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  it('within one TTL of its crash: written aside at once (a warning, no error), then moved to the default key when the predecessor’s expires, never missing', async () => {
    // Taken before the key is written: it cannot expire before crashedAt + TTL.
    const crashedAt = performance.now();
    await crashedRun(defaultId, '10.0.0.3');
    const aside = `${defaultId}-127.0.0.1`;
    const m = await web('127.0.0.1');
    await within(1000, async () => (await keys()).includes(`${aside}@127.0.0.1 passing`), 'written aside');

    // While the predecessor's key lives: aside, no error, nothing counted, the state on /upstreams.
    const [now, reg, renamed] = await Promise.all([keys(), registration(m), metric(m.admin, RENAMED)]);
    expect(performance.now() - crashedAt).toBeLessThan(TTL);
    expect(now).toEqual([`${defaultId}@10.0.0.3 passing`, `${aside}@127.0.0.1 passing`].sort());
    expectWaitingAside(m, {
      renamed,
      registration: reg,
      heldId: defaultId,
      heldBy: `10.0.0.3:${app.port}`,
      interimId: aside,
      instance: `127.0.0.1:${app.port}`,
      graceMs: GRACE,
      waitWarning: 'has not expired',
    });

    // Until the predecessor's key expires and meshlet moves: at every poll, its aside or default key (or both).
    const mine = (k: string[], id: string) => k.includes(`${id}@127.0.0.1 passing`);
    await throughout(
      GRACE + 3000,
      (k) => mine(k, defaultId) && !k.some((e) => e.startsWith(`${aside}@`)),
      (k) => mine(k, aside) || mine(k, defaultId),
      'moved to the default key',
    );
    expect(performance.now() - crashedAt).toBeGreaterThanOrEqual(TTL);
    await sleep(3 * INTERVAL);
    expect(await keys()).toEqual([`${defaultId}@127.0.0.1 passing`]);
    await expectMovedQuietly(m, {
      defaultId,
      interimId: aside,
      renamed: RENAMED,
      refused: REFUSED,
      waitWarning: 'has not expired',
    });
    // Past one more TTL: the default key is kept alive, nothing else appears.
    await sleep(TTL + 500);
    expect(await keys()).toEqual([`${defaultId}@127.0.0.1 passing`]);
    await stop(m);
    expect(await keys()).toEqual([]);
  }, 30_000);

  it('shut down while written aside: deletes only its aside key, never the predecessor’s', async () => {
    await crashedRun(defaultId, '10.0.0.3', 20_000);
    const aside = `${defaultId}-127.0.0.1`;
    const m = await web('127.0.0.1');
    await within(1000, async () => (await keys()).includes(`${aside}@127.0.0.1 passing`), 'written aside');
    await sleep(2 * INTERVAL);
    await stop(m);
    expect(await keys()).toEqual([`${defaultId}@10.0.0.3 passing`]);
  }, 30_000);

  it('with registry.serviceId: no refusal error either; nothing written until the predecessor’s key expires, then written', async () => {
    const crashedAt = performance.now();
    await crashedRun('web-1', '10.0.0.3');
    const m = await web('127.0.0.1', { serviceId: 'web-1' });
    await within(1000, () => waitWarnings(m).length > 0, 'the wait warned');
    await sleep(3 * INTERVAL);
    const [now, waiting] = await Promise.all([keys(), registration(m)]);
    expect(performance.now() - crashedAt).toBeLessThan(TTL);
    expect(now).toEqual(['web-1@10.0.0.3 passing']);
    expect(logsAt(m, 'error')).toEqual([]);
    expect(waitWarnings(m)).toHaveLength(1);
    expect(waitWarnings(m)[0]).toMatchObject({
      serviceId: 'web-1',
      heldBy: `10.0.0.3:${app.port}`,
      instance: `127.0.0.1:${app.port}`,
      waitMs: GRACE,
    });
    expect(waiting.registered).toBe(false);
    expect(waiting.refusedBecause).toMatch(/has not expired/);
    expect(waiting.refusedBecause).toContain(`10.0.0.3:${app.port}`);
    await within(GRACE + 3000, async () => (await keys())[0] === 'web-1@127.0.0.1 passing', 'taken over');
    expect(await keys()).toEqual(['web-1@127.0.0.1 passing']);
    expect(logsAt(m, 'error')).toEqual([]);
    expect(await metric(m.admin, REFUSED)).toBe(0);
    expect(await metric(m.admin, RENAMED)).toBe(0);
    expect(await registration(m)).toMatchObject({
      serviceId: 'web-1',
      registered: true,
      refusedBecause: null,
    });
  }, 30_000);

  it('held by a live instance: the newcomer is written aside at once, called a collision once the holder’s key outlived the wait, and stays aside after the holder leaves', async () => {
    const a = await web('127.0.0.1');
    await within(3000, async () => (await keys()).includes(`${defaultId}@127.0.0.1 passing`), 'a registered');
    const b = await web('127.0.0.2');
    const bId = `${defaultId}-127.0.0.2`;
    const waitingFrom = performance.now();
    await within(1000, async () => (await keys()).includes(`${bId}@127.0.0.2 passing`), 'b written aside');
    await sleep(3 * INTERVAL);
    // Well inside one TTL, b is aside, not called a collision yet (one wait warning); called not before
    // one TTL and one interval of a's key kept alive.
    await expectCollisionCalled(b, {
      waitingFrom,
      graceMs: GRACE,
      heldId: defaultId,
      heldBy: `127.0.0.1:${app.port}`,
      serviceId: bId,
      renamed: RENAMED,
      waitWarning: 'has not expired',
    });
    expect(await keys()).toEqual([`${defaultId}@127.0.0.1 passing`, `${bId}@127.0.0.2 passing`].sort());
    expect(logsAt(a, 'error')).toEqual([]);

    // The holder leaves: b keeps its distinct ID while it runs (no move back, no second error).
    await stop(a);
    await sleep(5 * INTERVAL);
    expect(await keys()).toEqual([`${bId}@127.0.0.2 passing`]);
    expect(await registration(b)).toMatchObject({ serviceId: bId, registered: true, refusedBecause: null });
    expect(logsAt(b, 'error')).toHaveLength(1);
    await stop(b);
    expect(await keys()).toEqual([]);
  }, 30_000);
});
