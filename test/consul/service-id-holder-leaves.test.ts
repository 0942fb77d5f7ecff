// A live holder of the service ID that leaves (deregistered) while a newcomer watches it: the newcomer takes the ID at its next look, as with an expiry.
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ConsulDouble } from '../consul-double/consul-double.ts';
import type { InProcessMeshlet } from '../helpers/meshlet.ts';
import type { TestUpstream } from '../helpers/upstream-server.ts';
import { expectMovedQuietly, expectWaitingAside } from './collision-called.ts';
import { adminGet, metric, within } from './consul-helpers.ts';
import { REFUSED, RENAMED, SIDE_BY_SIDE, serviceIdFixture } from './service-id-fixtures.ts';

const INTERVAL = 200;
/** The check TTL of every meshlet here, ms: the watch (TTL + interval) is far longer than one look. */
const TTL = 4000;
/** How long a live-looking holder is watched: one TTL and one check interval. */
const GRACE = TTL + INTERVAL;
/** The longest a free ID may wait for the newcomer's next look, ms: one interval, the look's calls and slack. */
const NEXT_LOOK = 2 * INTERVAL + 300;
const WAIT_WARNING = 'its TTL check has not expired';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Registration = { serviceId: string; registered: boolean; refusedBecause: string | null };

/** The `describe`-level pieces every case here uses: its own double, app and default ID (cases run side by side). */
function holderLeavesFixture() {
  const fx = serviceIdFixture({ interval: INTERVAL, timeout: 150, ttl: TTL });
  const ctx = {
    double: undefined as unknown as ConsulDouble,
    app: undefined as unknown as TestUpstream,
    id: '',
  };
  beforeAll(() => {
    ctx.double = fx.double;
    ctx.app = fx.app;
    ctx.id = fx.defaultId;
  });

  /** Another live instance at `address` holds `id`: its TTL check (1 h) passes for the whole test. */
  async function liveHolder(id: string, address: string): Promise<void> {
    await fx.registerByHand({
      ID: id,
      Name: 'web',
      Address: address,
      Port: ctx.app.port,
      Meta: { meshlet_inbound: 'plain', meshlet_protocol: 'http1' },
      Check: { CheckID: `service:${id}`, Name: 'other', TTL: '1h', Status: 'passing' },
    });
  }

  /** The holder leaves cleanly, as its own shutdown does: `PUT /v1/agent/service/deregister/<id>`. */
  async function holderLeaves(id: string): Promise<void> {
    const res = await request(`${ctx.double.url}/v1/agent/service/deregister/${id}`, { method: 'PUT' });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
  }

  async function registration(m: InProcessMeshlet): Promise<Registration> {
    return (await adminGet<{ registry: { registration: Registration } }>(m.admin, '/upstreams')).body.registry
      .registration;
  }

  /** Registrations at `address` (`+id`) and deregistrations (`-id`) of the given IDs the double received, in order. */
  function moves(ids: string[], address = '127.0.0.1'): string[] {
    return ctx.double.requests
      .map((r) => {
        if (r.path === '/v1/agent/service/register') {
          const d = JSON.parse(r.body) as { ID: string; Address: string };
          return ids.includes(d.ID) && d.Address === address ? `+${d.ID}` : null;
        }
        const prefix = '/v1/agent/service/deregister/';
        if (!r.path.startsWith(prefix)) return null;
        const id = r.path.slice(prefix.length);
        return ids.includes(id) ? `-${id}` : null;
      })
      .filter((p): p is string => p !== null);
  }

  /**
   * Polls every 10 ms until `done` (rejects after `timeoutMs`); at every poll `invariant` must hold
   * (rejects naming the catalog at the first poll where it does not). Resolves with the time taken, ms.
   */
  async function throughout(
    timeoutMs: number,
    done: () => boolean,
    invariant: () => boolean,
    what: string,
  ): Promise<number> {
    const from = performance.now();
    for (let polls = 1; ; polls++) {
      if (!invariant())
        throw new Error(`${what}: invariant broken at poll ${polls}: ${fx.catalog().join(', ')}`);
      if (done()) return performance.now() - from;
      if (performance.now() - from > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  return { fx, ctx, liveHolder, holderLeaves, registration, moves, throughout };
}

describe('the default ID’s live holder deregisters during the watch', SIDE_BY_SIDE, () => {
  const { fx, ctx, liveHolder, holderLeaves, registration, moves, throughout } = holderLeavesFixture();

  it('moves to the default ID at its next look (not at the end of the watch), registered before the interim ID goes, nothing counted', async () => {
    const defaultId = ctx.id;
    const aside = `${defaultId}-127.0.0.1`;
    await liveHolder(defaultId, '10.0.0.7');
    const m = await fx.web('127.0.0.1');
    const watchFrom = performance.now();
    await within(1000, () => fx.passing(aside), 'registered aside');
    await sleep(3 * INTERVAL);
    expectWaitingAside(m, {
      renamed: await metric(m.admin, RENAMED),
      registration: await registration(m),
      heldId: defaultId,
      heldBy: `10.0.0.7:${ctx.app.port}`,
      interimId: aside,
      instance: `127.0.0.1:${ctx.app.port}`,
      graceMs: GRACE,
      waitWarning: WAIT_WARNING,
    });

    await holderLeaves(defaultId);
    const mine = (id: string) => fx.catalog().includes(`${id}@127.0.0.1`) && fx.passing(id);
    const took = await throughout(
      GRACE,
      () => mine(defaultId) && !fx.catalog().includes(`${aside}@127.0.0.1`),
      () => mine(aside) || mine(defaultId),
      'moved to the default ID',
    );
    // At the next look, well before the watch would have ended.
    expect(took).toBeLessThan(NEXT_LOOK);
    expect(performance.now() - watchFrom).toBeLessThan(GRACE);
    await sleep(3 * INTERVAL);
    expect(fx.catalog()).toEqual([`${defaultId}@127.0.0.1`]);
    expect(fx.registeredIds('127.0.0.1')).toEqual([aside, defaultId]);
    // The holder's deregistration, then the default ID registered before the interim one went.
    expect(moves([defaultId, aside])).toEqual([`+${aside}`, `-${defaultId}`, `+${defaultId}`, `-${aside}`]);
    await expectMovedQuietly(m, {
      defaultId,
      interimId: aside,
      renamed: RENAMED,
      refused: REFUSED,
      waitWarning: WAIT_WARNING,
    });
    // Past the end of the watch: it stays, no collision called late.
    await sleep(Math.max(0, GRACE - (performance.now() - watchFrom)) + 2 * INTERVAL);
    expect(fx.catalog()).toEqual([`${defaultId}@127.0.0.1`]);
    expect(fx.logsAt(m, 'error')).toEqual([]);
    expect(await metric(m.admin, RENAMED)).toBe(0);
    await fx.stop(m);
    expect(fx.catalog()).toEqual([]);
  }, 20_000);
});

describe(
  'the default ID’s live holder deregisters during the watch, with the sidecar proxy registration',
  SIDE_BY_SIDE,
  () => {
    const { fx, ctx, liveHolder, holderLeaves, moves, throughout } = holderLeavesFixture();

    it('the proxy moves with the service (registered under the default ID before its interim registration goes), never missing', async () => {
      const defaultId = ctx.id;
      const aside = `${defaultId}-127.0.0.1`;
      await liveHolder(defaultId, '10.0.0.7');
      const m = await fx.withSidecar('127.0.0.1', 21630);
      /** The proxies in the catalog as `id>DestinationServiceID`. */
      const proxies = (): string[] =>
        ctx.double
          .instances('web-sidecar-proxy')
          .map(
            (s) => `${s.id}>${String((s.proxy as { DestinationServiceID?: string }).DestinationServiceID)}`,
          );
      await within(
        3000,
        () => fx.passing(aside) && proxies().length === 1,
        'registered aside with its proxy',
      );
      expect(proxies()).toEqual([`${aside}-sidecar-proxy>${aside}`]);

      await holderLeaves(defaultId);
      const took = await throughout(
        GRACE,
        () =>
          fx.passing(defaultId) &&
          fx.catalog().length === 1 &&
          proxies().length === 1 &&
          proxies()[0] === `${defaultId}-sidecar-proxy>${defaultId}`,
        () =>
          (fx.passing(aside) || fx.passing(defaultId)) &&
          proxies().some(
            (p) => p.startsWith(`${aside}-sidecar-proxy>`) || p.startsWith(`${defaultId}-sidecar-proxy>`),
          ),
        'moved with its proxy',
      );
      expect(took).toBeLessThan(NEXT_LOOK + 500);
      expect(fx.catalog()).toEqual([`${defaultId}@127.0.0.1`]);
      const proxyIds = [`${defaultId}-sidecar-proxy`, `${aside}-sidecar-proxy`];
      const order = moves(proxyIds);
      expect(order.indexOf(`+${defaultId}-sidecar-proxy`)).toBeGreaterThan(-1);
      expect(order.indexOf(`+${defaultId}-sidecar-proxy`)).toBeLessThan(
        order.indexOf(`-${aside}-sidecar-proxy`),
      );
      expect(fx.logsAt(m, 'error')).toEqual([]);
      expect(await metric(m.admin, RENAMED)).toBe(0);
      await fx.stop(m);
      expect(fx.catalog()).toEqual([]);
      expect(proxies()).toEqual([]);
    }, 20_000);
  },
);

describe('a registry.serviceId’s live holder deregisters during the watch', SIDE_BY_SIDE, () => {
  const { fx, ctx, liveHolder, holderLeaves, registration } = holderLeavesFixture();

  it('registers under that ID at its next look: no error, nothing counted', async () => {
    const id = `web-1-${ctx.app.port}`;
    await liveHolder(id, '10.0.0.7');
    const m = await fx.web('127.0.0.1', { serviceId: id });
    const watchFrom = performance.now();
    await within(
      1000,
      () => fx.logsAt(m, 'warn').some((l) => String(l.msg).includes(WAIT_WARNING)),
      'warned',
    );
    await sleep(3 * INTERVAL);
    const waiting = await registration(m);
    expect(waiting.registered).toBe(false);
    expect(waiting.refusedBecause).toMatch(/its TTL check has not expired/);
    expect(fx.registeredIds('127.0.0.1')).toEqual([]);

    await holderLeaves(id);
    const took = await within(
      GRACE,
      () => fx.catalog()[0] === `${id}@127.0.0.1` && fx.passing(id),
      'registered',
    );
    expect(took).toBeLessThan(NEXT_LOOK);
    expect(performance.now() - watchFrom).toBeLessThan(GRACE);
    expect(fx.catalog()).toEqual([`${id}@127.0.0.1`]);
    // The agent holds it once it answered; meshlet marks it registered when the answer arrives.
    await within(500, async () => (await registration(m)).registered, 'registered on /upstreams');
    expect(await registration(m)).toMatchObject({ serviceId: id, registered: true, refusedBecause: null });
    // Past the end of the watch: still registered, no collision called late.
    await sleep(Math.max(0, GRACE - (performance.now() - watchFrom)) + 2 * INTERVAL);
    expect(fx.catalog()).toEqual([`${id}@127.0.0.1`]);
    expect(fx.registeredIds('127.0.0.1')).toEqual([id]);
    expect(fx.logsAt(m, 'error')).toEqual([]);
    expect(await metric(m.admin, RENAMED)).toBe(0);
    expect(await metric(m.admin, REFUSED)).toBe(0);
    await fx.stop(m);
    expect(fx.catalog()).toEqual([]);
  }, 20_000);
});

describe('the default ID’s holder is a meshlet that shuts down during the watch', SIDE_BY_SIDE, () => {
  const { fx, ctx, throughout } = holderLeavesFixture();

  it('the newcomer moves to the default ID at its next look after the holder deregistered, nothing counted on either', async () => {
    const defaultId = ctx.id;
    const a = await fx.web('127.0.0.1');
    await within(3000, () => fx.passing(defaultId), 'a registered');
    const b = await fx.web('127.0.0.2');
    const bAside = `${defaultId}-127.0.0.2`;
    const watchFrom = performance.now();
    await within(1000, () => fx.passing(bAside), 'b registered aside');
    await sleep(3 * INTERVAL);
    await fx.stop(a);
    const leftAt = performance.now();
    expect(fx.catalog()).toEqual([`${bAside}@127.0.0.2`]);
    const mine = (id: string) => fx.catalog().includes(`${id}@127.0.0.2`) && fx.passing(id);
    await throughout(
      GRACE,
      () => mine(defaultId) && fx.catalog().length === 1,
      () => mine(bAside) || mine(defaultId),
      'b moved to the default ID',
    );
    expect(performance.now() - leftAt).toBeLessThan(NEXT_LOOK);
    expect(performance.now() - watchFrom).toBeLessThan(GRACE);
    await expectMovedQuietly(b, {
      defaultId,
      interimId: bAside,
      renamed: RENAMED,
      refused: REFUSED,
      waitWarning: WAIT_WARNING,
    });
    await fx.stop(b);
    expect(fx.catalog()).toEqual([]);
  }, 20_000);
});
