// A crashed earlier run's registration (a pod re-created at a new address): registered aside at once, then moved to the default ID when it expires, not called a collision; a live holder still is; a moved-aside ID stays put.
import { beforeAll, describe, expect, it } from 'vitest';
import type { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import type { TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, consulRegistry, metric, within } from './consul-helpers.ts';
import { expectCollisionCalled, expectMovedQuietly, expectWaitingAside } from './collision-called.ts';
import { REFUSED, RENAMED, serviceIdFixture } from './service-id-fixtures.ts';

const INTERVAL = 200;
/**
 * The check TTL of every meshlet here (and of the crashed run before it), ms: long enough that a
 * slow start (a warm one: see `beforeAll`) still finds the predecessor's check passing.
 */
const TTL = 2000;
/** How long a live-looking holder is watched: one TTL and one check interval. */
const GRACE = TTL + INTERVAL;
const WAITING = /its TTL check has not expired/;

const fx = serviceIdFixture({ interval: INTERVAL, timeout: 150, ttl: TTL });
const {
  web,
  withSidecar,
  stop,
  catalog,
  passing,
  registeredIds,
  logsAt,
  registerByHand,
  anotherInstanceTakesDefaultId,
} = fx;
let double: ConsulDouble;
let app: TestUpstream;
/** The default ID: `web-<hostname>-<app port>`, the same for a pod and its re-created successor. */
let defaultId: string;
beforeAll(async () => {
  ({ double, app, defaultId } = fx);
  // A process's first meshlet starts slowest (its code not yet compiled; over 1 s on a loaded
  // machine): one registering another service is started and stopped here, so no test's TTL pays
  // for it. The double then forgets it.
  const warmUp = await startMeshlet({
    service: { name: 'warm-up', port: app.port, address: '127.0.0.1' },
    registry: consulRegistry(double, { check: { interval: INTERVAL, timeout: 150, ttl: TTL } }),
    shutdown: { drainDelay: 0 },
    accessLog: { enabled: false },
  });
  await within(
    3000,
    () => double.instances('warm-up').some((i) => double.checks(i.id).some((c) => c.status === 'passing')),
    'warm-up registered',
  );
  await warmUp.close();
  double.restart();
  double.clearRequests();
});

/** The warning a meshlet logs when it starts watching a live-looking holder. */
function waitWarnings(m: InProcessMeshlet): Record<string, unknown>[] {
  return logsAt(m, 'warn').filter((l) => String(l.msg).includes('its TTL check has not expired'));
}

/**
 * The registration a meshlet at `address` left when it crashed (SIGKILL, node eviction): nobody
 * deregistered it, and its TTL check passes until the TTL it last refreshed runs out.
 */
async function crashedRun(id: string, address: string): Promise<void> {
  await registerByHand({
    ID: id,
    Name: 'web',
    Address: address,
    Port: app.port,
    Meta: { meshlet_inbound: 'plain', meshlet_protocol: 'http1' },
    Check: {
      CheckID: `service:${id}`,
      Name: 'meshlet: TCP connect on the local app',
      TTL: `${TTL}ms`,
      Status: 'passing',
      DeregisterCriticalServiceAfter: '1m',
    },
  });
}

type Registration = { serviceId: string; registered: boolean; refusedBecause: string | null };
async function registration(m: InProcessMeshlet): Promise<Registration> {
  return (await adminGet<{ registry: { registration: Registration } }>(m.admin, '/upstreams')).body.registry
    .registration;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Paths of the deregistrations the double received. */
function deregistered(): string[] {
  return double.requests
    .filter((r) => r.path.startsWith('/v1/agent/service/deregister/'))
    .map((r) => r.path.slice('/v1/agent/service/deregister/'.length));
}

/**
 * Polls every 10 ms until `done` (rejects after `timeoutMs`); at every poll, `invariant` must hold
 * (rejects naming the catalog at the first poll where it does not).
 */
async function throughout(
  timeoutMs: number,
  done: () => boolean,
  invariant: () => boolean,
  what: string,
): Promise<number> {
  const started = performance.now();
  let polls = 0;
  for (;;) {
    polls++;
    if (!invariant()) throw new Error(`${what}: invariant broken at poll ${polls}: ${catalog().join(', ')}`);
    if (done()) return polls;
    if (performance.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(10);
  }
}

describe('a pod re-created at a new address within one TTL of its crash', () => {
  it('registers aside at once (a warning, no error), then moves to the default ID when its predecessor’s TTL expires, never missing from the catalog', async () => {
    await crashedRun(defaultId, '10.0.0.3');
    const crashedAt = performance.now();
    const aside = `${defaultId}-127.0.0.1`;
    const m = await web('127.0.0.1');
    // Discoverable within a check interval, under the distinct ID: no capacity gap.
    await within(INTERVAL, () => passing(aside), 'registered aside');

    // While the predecessor's check still passes: aside, no error, nothing counted, the state on /upstreams.
    expect(performance.now() - crashedAt).toBeLessThan(TTL);
    expect(passing(defaultId)).toBe(true);
    expect(catalog()).toEqual([`${defaultId}@10.0.0.3`, `${aside}@127.0.0.1`].sort());
    expect(registeredIds('127.0.0.1')).toEqual([aside]);
    expectWaitingAside(m, {
      renamed: await metric(m.admin, RENAMED),
      registration: await registration(m),
      heldId: defaultId,
      heldBy: `10.0.0.3:${app.port}`,
      interimId: aside,
      instance: `127.0.0.1:${app.port}`,
      graceMs: GRACE,
      waitWarning: 'its TTL check has not expired',
    });

    // Until the predecessor expires and meshlet moves: at every poll, aside or default (or both) is registered and passing.
    const mine = (id: string) => catalog().includes(`${id}@127.0.0.1`) && passing(id);
    await throughout(
      GRACE + 3000,
      () => mine(defaultId) && !catalog().includes(`${aside}@127.0.0.1`),
      () => mine(aside) || mine(defaultId),
      'moved to the default ID',
    );
    expect(performance.now() - crashedAt).toBeGreaterThanOrEqual(TTL);
    await sleep(3 * INTERVAL);
    expect(catalog()).toEqual([`${defaultId}@127.0.0.1`]);
    expect(passing(defaultId)).toBe(true);
    expect(registeredIds('127.0.0.1')).toEqual([aside, defaultId]);
    // The default ID was registered before the interim one went.
    const order = double.requests
      .map((r) => {
        if (r.path !== '/v1/agent/service/register') return r.path;
        const d = JSON.parse(r.body) as { ID: string; Address: string };
        return `+${d.ID}@${d.Address}`;
      })
      .filter((p) => p === `+${defaultId}@127.0.0.1` || p === `/v1/agent/service/deregister/${aside}`);
    expect(order).toEqual([`+${defaultId}@127.0.0.1`, `/v1/agent/service/deregister/${aside}`]);
    await expectMovedQuietly(m, {
      defaultId,
      interimId: aside,
      renamed: RENAMED,
      refused: REFUSED,
      waitWarning: 'its TTL check has not expired',
    });
    await stop(m);
    expect(catalog()).toEqual([]);
  });

  it('shut down while registered aside: deregisters only the aside ID, never the predecessor’s', async () => {
    await crashedRun(defaultId, '10.0.0.3');
    const aside = `${defaultId}-127.0.0.1`;
    const m = await web('127.0.0.1');
    await within(INTERVAL, () => passing(aside), 'registered aside');
    await sleep(2 * INTERVAL);
    await stop(m);
    expect(catalog()).toEqual([`${defaultId}@10.0.0.3`]);
    expect(deregistered()).toEqual([aside]);
  });

  it('shut down in the middle of the move (a slow agent): neither ID is left behind', async () => {
    await crashedRun(defaultId, '10.0.0.3');
    const aside = `${defaultId}-127.0.0.1`;
    const m = await web('127.0.0.1');
    await within(INTERVAL, () => passing(aside), 'registered aside');
    double.setSlow(150);
    try {
      // The default registration has landed; its check update and the aside deregistration are still to come.
      await within(GRACE + 3000, () => catalog().includes(`${defaultId}@127.0.0.1`), 'default ID registered');
      expect(catalog()).toContain(`${aside}@127.0.0.1`);
      await stop(m);
    } finally {
      double.setSlow(0);
    }
    await sleep(300); // calls the shutdown cancelled may still land on the slow agent
    expect(catalog()).toEqual([]);
    expect(deregistered().sort()).toEqual([aside, defaultId].sort());
  });

  it('with the sidecar proxy registration: the proxy moves with the service (registered under the default ID before its interim registration goes), never missing from the catalog', async () => {
    await crashedRun(defaultId, '10.0.0.3');
    const aside = `${defaultId}-127.0.0.1`;
    const m = await withSidecar('127.0.0.1', 21530);
    /** The proxies in the catalog as `id>DestinationServiceID`. */
    const proxies = (): string[] =>
      double
        .instances('web-sidecar-proxy')
        .map((s) => `${s.id}>${String((s.proxy as { DestinationServiceID?: string }).DestinationServiceID)}`);
    await within(3000, () => passing(aside) && proxies().length === 1, 'registered aside with its proxy');
    expect(proxies()).toEqual([`${aside}-sidecar-proxy>${aside}`]);
    // A slower agent (every call 60 ms) widens any gap between two calls of the move past a poll.
    double.setSlow(60);
    try {
      // At every poll, the proxy is registered under the interim ID or the default one (or both).
      await throughout(
        GRACE + 5000,
        () =>
          passing(defaultId) &&
          catalog().length === 1 &&
          proxies().length === 1 &&
          proxies()[0] === `${defaultId}-sidecar-proxy>${defaultId}`,
        () =>
          proxies().some(
            (p) => p.startsWith(`${aside}-sidecar-proxy>`) || p.startsWith(`${defaultId}-sidecar-proxy>`),
          ),
        'moved with its proxy',
      );
    } finally {
      double.setSlow(0);
    }
    expect(catalog()).toEqual([`${defaultId}@127.0.0.1`]);
    expect(proxies()).toEqual([`${defaultId}-sidecar-proxy>${defaultId}`]);
    // The proxy was registered under the default ID before its interim registration went.
    const order = double.requests
      .map((r) => {
        if (r.path !== '/v1/agent/service/register') return r.path;
        return `+${(JSON.parse(r.body) as { ID: string }).ID}`;
      })
      .filter(
        (p) =>
          p === `+${defaultId}-sidecar-proxy` || p === `/v1/agent/service/deregister/${aside}-sidecar-proxy`,
      );
    expect(order[0]).toBe(`+${defaultId}-sidecar-proxy`);
    expect(order).toContain(`/v1/agent/service/deregister/${aside}-sidecar-proxy`);
    expect(logsAt(m, 'error')).toEqual([]);
    await stop(m);
    expect(catalog()).toEqual([]);
    expect(proxies()).toEqual([]);
  });

  it('with registry.serviceId: no refusal error either; not registered until the predecessor’s TTL expires, then registers', async () => {
    await crashedRun('web-1', '10.0.0.3');
    const crashedAt = performance.now();
    const m = await web('127.0.0.1', { serviceId: 'web-1' });
    await sleep(3 * INTERVAL);
    expect(performance.now() - crashedAt).toBeLessThan(TTL);
    expect(registeredIds('127.0.0.1')).toEqual([]);
    expect(logsAt(m, 'error')).toEqual([]);
    expect(waitWarnings(m)).toHaveLength(1);
    const waiting = await registration(m);
    expect(waiting.registered).toBe(false);
    expect(waiting.refusedBecause).toMatch(WAITING);
    expect(waiting.refusedBecause).toContain(`10.0.0.3:${app.port}`);
    await within(GRACE + 3000, () => catalog()[0] === 'web-1@127.0.0.1' && passing('web-1'), 'taken over');
    expect(catalog()).toEqual(['web-1@127.0.0.1']);
    expect(logsAt(m, 'error')).toEqual([]);
    expect(await metric(m.admin, REFUSED)).toBe(0);
    expect(await metric(m.admin, RENAMED)).toBe(0);
  });
});

describe('a live instance holding the default ID', () => {
  it('is not taken for a predecessor: the newcomer registers aside at once, and once the holder’s check stayed refreshed through the wait, the collision error; it stays aside', async () => {
    const a = await web('127.0.0.1');
    await within(3000, () => passing(defaultId), 'a registered');
    const b = await web('127.0.0.2');
    const bId = `${defaultId}-127.0.0.2`;
    const waitingFrom = performance.now();
    await within(INTERVAL, () => passing(bId), 'b registered aside');
    await sleep(3 * INTERVAL);
    // Well inside one TTL: b is registered aside.
    expect(registeredIds('127.0.0.2')).toEqual([bId]);
    // Well inside one TTL, not called a collision yet (one wait warning); called not before one TTL and
    // one interval of a's refreshed check.
    await expectCollisionCalled(b, {
      waitingFrom,
      graceMs: GRACE,
      heldId: defaultId,
      heldBy: `127.0.0.1:${app.port}`,
      serviceId: bId,
      renamed: RENAMED,
      waitWarning: 'its TTL check has not expired',
    });
    await sleep(3 * INTERVAL);
    expect(catalog()).toEqual([`${defaultId}@127.0.0.1`, `${bId}@127.0.0.2`].sort());
    expect(passing(defaultId) && passing(bId)).toBe(true);
    expect(registeredIds('127.0.0.2')).toEqual([bId]);
    expect(await registration(b)).toMatchObject({ serviceId: bId, registered: true, refusedBecause: null });
    expect(logsAt(a, 'error')).toEqual([]);
  });
});

describe('an instance registered over after its own registration', () => {
  it('moves aside at once: the instance that replaced it is live, nothing to wait out', async () => {
    const m = await web('127.0.0.1');
    await within(3000, () => passing(defaultId), 'registered');
    await sleep(3 * INTERVAL); // past the tick that reads a new registration back
    // Another process registers the ID over meshlet's (its own check replacing meshlet's).
    await anotherInstanceTakesDefaultId();
    const moved = `${defaultId}-127.0.0.1`;
    const took = await within(GRACE + 3000, () => passing(moved), 'moved aside');
    expect(took).toBeLessThan(TTL);
    expect(waitWarnings(m)).toEqual([]);
    expect(logsAt(m, 'error')).toHaveLength(1);
    expect(catalog()).toEqual([`${defaultId}@127.0.0.9`, `${moved}@127.0.0.1`].sort());
  });
});

describe('an instance that moved to a distinct ID', () => {
  it('keeps it after the default ID’s holder leaves (a stable ID while it runs)', async () => {
    const a = await web('127.0.0.1');
    await within(3000, () => passing(defaultId), 'a registered');
    const b = await web('127.0.0.2');
    const bId = `${defaultId}-127.0.0.2`;
    await within(INTERVAL, () => passing(bId), 'b registered aside');
    // a's check stays refreshed through b's watch: a live instance, b keeps the distinct ID.
    await within(GRACE + 3000, () => logsAt(b, 'error').length > 0, 'the collision called');
    await stop(a);
    expect(catalog()).toEqual([`${bId}@127.0.0.2`]);
    const since = double.requests.length;

    await sleep(5 * INTERVAL);
    expect(catalog()).toEqual([`${bId}@127.0.0.2`]);
    expect(passing(bId)).toBe(true);
    const later = double.requests.slice(since);
    expect(later.filter((r) => r.path === '/v1/agent/service/register')).toEqual([]);
    expect(later.filter((r) => r.path.startsWith('/v1/agent/service/deregister/'))).toEqual([]);
    expect(later.some((r) => r.path === `/v1/agent/check/update/service:${bId}`)).toBe(true);
    expect(await registration(b)).toMatchObject({ serviceId: bId, registered: true });
    expect(logsAt(b, 'error')).toHaveLength(1);
  });
});
