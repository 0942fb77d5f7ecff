// The Consul agent restarts (with its data directory) while a newcomer watches a crashed run's registration of its ID: the restored check's fresh TTL is waited out, never called a collision; a live holder still is.
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import type { TestUpstream } from '../helpers/upstream-server.ts';
import { expectCollisionCalled, expectMovedQuietly } from './collision-called.ts';
import { adminGet, consulRegistry, metric, within } from './consul-helpers.ts';
import { REFUSED, RENAMED, serviceIdFixture } from './service-id-fixtures.ts';

const INTERVAL = 200;
/**
 * The check TTL of every meshlet here and of the crashed run, ms. Consul keeps a TTL check's state
 * until its last update plus the TTL in whole seconds, so a restart less than TTL − 1 s after the
 * crashed run's last update always restores it.
 */
const TTL = 3000;
/** How long a live-looking holder is watched: one TTL and one check interval. */
const GRACE = TTL + INTERVAL;
/** How long the agent is down in a short restart, ms: several of the newcomer's looks fail. */
const SHORT_DOWN = 700;
const WAIT_WARNING = 'its TTL check has not expired';

const fx = serviceIdFixture({ interval: INTERVAL, timeout: 150, ttl: TTL });
const { web, catalog, passing, logsAt, registerByHand } = fx;
let double: ConsulDouble;
let app: TestUpstream;
let defaultId: string;
beforeAll(async () => {
  ({ double, app, defaultId } = fx);
  // A process's first meshlet starts slowest: one is started and stopped here, so no test's TTL pays for it.
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The registration a meshlet at `address` left when it crashed: registered, its TTL check updated
 * once (as meshlet does right after registering, so the agent persisted the check's state), then
 * nothing. Resolves with when the update was answered (`performance.now()`).
 */
async function crashedRun(id: string, address: string): Promise<number> {
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
  const res = await request(`${double.url}/v1/agent/check/update/service:${id}`, {
    method: 'PUT',
    body: JSON.stringify({ Status: 'passing', Output: `TCP connect 127.0.0.1:${app.port}: Success` }),
  });
  await res.body.dump();
  expect(res.statusCode).toBe(200);
  return performance.now();
}

/** The check `service:<id>` as the double holds it. */
function checkOf(id: string): { status: string; output: string } {
  const c = double.checks(id).find((x) => x.checkId === `service:${id}`);
  if (c === undefined) throw new Error(`no check service:${id}`);
  return { status: c.status, output: c.output };
}

type Registration = { serviceId: string; registered: boolean; refusedBecause: string | null };
async function registration(m: InProcessMeshlet): Promise<Registration> {
  return (await adminGet<{ registry: { registration: Registration } }>(m.admin, '/upstreams')).body.registry
    .registration;
}

/** Whether `m` has logged an error (a collision called). */
const collided = (m: InProcessMeshlet) => logsAt(m, 'error').length > 0;

describe('the Consul agent restarts with its data directory while a newcomer watches a crashed run’s registration', () => {
  it('a short restart (the crashed run’s check comes back passing with a full TTL): waited out, then moved to the default ID; no collision', async () => {
    const updatedAt = await crashedRun(defaultId, '10.0.0.3');
    const aside = `${defaultId}-127.0.0.1`;
    const m = await web('127.0.0.1');
    await within(1000, () => passing(aside), 'registered aside');
    const watchFrom = performance.now();
    await sleep(3 * INTERVAL);
    expect(logsAt(m, 'error')).toEqual([]);

    const restartFrom = performance.now();
    expect(restartFrom - updatedAt).toBeLessThan(TTL - 1000);
    await double.restartWithState(SHORT_DOWN);
    const back = performance.now();
    // As Consul: the crashed run's check is back passing, with its output, for a full TTL from now.
    expect(checkOf(defaultId)).toEqual({
      status: 'passing',
      output: `TCP connect 127.0.0.1:${app.port}: Success`,
    });
    expect(catalog()).toEqual([`${defaultId}@10.0.0.3`, `${aside}@127.0.0.1`].sort());

    // The watch the restart did not interrupt would end here, with the holder still passing.
    await sleep(Math.max(0, watchFrom + GRACE + 2 * INTERVAL - performance.now()));
    expect(back + TTL).toBeGreaterThan(performance.now());
    expect(checkOf(defaultId).status).toBe('passing');
    expect(logsAt(m, 'error')).toEqual([]);
    expect(await metric(m.admin, RENAMED)).toBe(0);
    expect(await registration(m)).toMatchObject({ serviceId: aside, registered: true });

    // One TTL after the restart the restored check expires; the newcomer takes the ID at its next look.
    await within(
      back + TTL + GRACE - performance.now(),
      () => catalog().join() === `${defaultId}@127.0.0.1` && passing(defaultId),
      'moved to the default ID',
    );
    expect(performance.now() - back).toBeGreaterThanOrEqual(TTL);
    await expectMovedQuietly(m, {
      defaultId,
      interimId: aside,
      renamed: RENAMED,
      refused: REFUSED,
      waitWarning: WAIT_WARNING,
    });
  }, 20_000);

  it('a restart longer than the crashed run’s TTL (its check comes back critical, not "TTL expired", until one TTL later): waited out too; no collision', async () => {
    const updatedAt = await crashedRun(defaultId, '10.0.0.3');
    const aside = `${defaultId}-127.0.0.1`;
    const m = await web('127.0.0.1');
    await within(1000, () => passing(aside), 'registered aside');
    await sleep(3 * INTERVAL);

    // Down until past the crashed run's TTL: Consul finds its persisted state expired.
    await double.restartWithState(Math.max(0, updatedAt + TTL + 300 - performance.now()));
    const back = performance.now();
    expect(back - updatedAt).toBeGreaterThan(TTL);
    expect(checkOf(defaultId)).toEqual({ status: 'critical', output: '' });

    // A holder that is critical but not expired is a live instance's look: it is watched afresh.
    await sleep(GRACE / 2);
    expect(collided(m)).toBe(false);
    expect(await registration(m)).toMatchObject({ serviceId: aside, registered: true });
    await within(
      back + TTL + GRACE - performance.now(),
      () => catalog().join() === `${defaultId}@127.0.0.1` && passing(defaultId),
      'moved to the default ID',
    );
    expect(performance.now() - back).toBeGreaterThanOrEqual(TTL);
    await expectMovedQuietly(m, {
      defaultId,
      interimId: aside,
      renamed: RENAMED,
      refused: REFUSED,
      waitWarning: WAIT_WARNING,
    });
  }, 20_000);

  it('with registry.serviceId: not registered until the restored check expires, then registers; no refusal error', async () => {
    const updatedAt = await crashedRun('web-1', '10.0.0.3');
    const m = await web('127.0.0.1', { serviceId: 'web-1' });
    await sleep(3 * INTERVAL);
    expect((await registration(m)).refusedBecause).toMatch(WAIT_WARNING);

    expect(performance.now() - updatedAt).toBeLessThan(TTL - 1000);
    await double.restartWithState(SHORT_DOWN);
    const back = performance.now();
    expect(checkOf('web-1').status).toBe('passing');
    await within(
      back + TTL + GRACE - performance.now(),
      () => collided(m) || (catalog().join() === 'web-1@127.0.0.1' && passing('web-1')),
      'registered under web-1',
    );
    expect(logsAt(m, 'error')).toEqual([]);
    expect(catalog()).toEqual(['web-1@127.0.0.1']);
    expect(performance.now() - back).toBeGreaterThanOrEqual(TTL);
    expect(await metric(m.admin, REFUSED)).toBe(0);
    expect(await metric(m.admin, RENAMED)).toBe(0);
  }, 20_000);

  it('a live holder across the restart is still called a collision, one whole watch after the agent answers again', async () => {
    const a = await web('127.0.0.1');
    await within(3000, () => passing(defaultId), 'a registered');
    const b = await web('127.0.0.2');
    const bId = `${defaultId}-127.0.0.2`;
    await within(1000, () => passing(bId), 'b registered aside');
    await sleep(3 * INTERVAL);
    await double.restartWithState(SHORT_DOWN);
    const back = performance.now();
    await expectCollisionCalled(b, {
      waitingFrom: back,
      graceMs: GRACE,
      heldId: defaultId,
      heldBy: `127.0.0.1:${app.port}`,
      serviceId: bId,
      renamed: RENAMED,
      waitWarning: WAIT_WARNING,
    });
    expect(catalog()).toEqual([`${defaultId}@127.0.0.1`, `${bId}@127.0.0.2`].sort());
    expect(logsAt(a, 'error')).toEqual([]);
  }, 20_000);
});

describe('a restart between two looks, faster than one check interval', () => {
  /** A check interval far longer than the restart, so that no call of the registration's meets it. */
  const SLOW_INTERVAL = 1000;
  const LONG_TTL = 5000;
  const slow = serviceIdFixture({ interval: SLOW_INTERVAL, timeout: 150, ttl: LONG_TTL });

  it('drops the read meshlet holds open on the agent meanwhile: the watch starts over, the restored check is waited out; no collision', async () => {
    const d = slow.double;
    const id = slow.defaultId;
    const aside = `${id}-127.0.0.1`;
    const at = Date.now();
    await slow.registerByHand({
      ID: id,
      Name: 'web',
      Address: '10.0.0.3',
      Port: slow.app.port,
      Check: { CheckID: `service:${id}`, Name: 'crashed', TTL: `${LONG_TTL}ms`, Status: 'passing' },
    });
    const res = await request(`${d.url}/v1/agent/check/update/service:${id}`, {
      method: 'PUT',
      body: JSON.stringify({ Status: 'passing', Output: 'ok' }),
    });
    await res.body.dump();
    const updatedAt = performance.now();
    // No discovery watch (no upstreams, no on-demand catalog watch): nothing else holds a query open.
    const m = await slow.web('127.0.0.1', { watch: { maxOnDemand: 0 } });
    await within(2000, () => slow.passing(aside), 'registered aside');
    /** The registration's calls the double received since `at`: looks at the holder and its own check updates. */
    const calls = (path: string) => d.requests.filter((r) => r.at >= at && r.path === path);
    const looks = () => calls(`/v1/agent/health/service/id/${id}`);
    const updates = () => calls(`/v1/agent/check/update/service:${aside}`);
    // Right after a tick's look and check update, so that the next tick meets the agent back up.
    await within(4 * SLOW_INTERVAL, () => looks().length >= 3, 'three looks');
    const lookAt = looks()[2]!.at;
    await within(1000, () => updates().some((u) => u.at >= lookAt), 'the tick’s check update');
    await sleep(30);
    expect(performance.now() - updatedAt).toBeLessThan(LONG_TTL - 1000);
    const downFrom = Date.now();
    await d.restartWithState(50);
    const back = performance.now();
    const upFrom = Date.now();
    expect(slow.passing(id)).toBe(true);
    // The next look is the next tick's, after the agent came back: no call of the registration's met
    // the restart, only the read held open on the holder's registration, which the agent dropped.
    await within(2 * SLOW_INTERVAL, () => looks().length >= 4, 'the next look');
    expect(lookAt).toBeLessThan(downFrom);
    expect(looks()[3]!.at).toBeGreaterThanOrEqual(upFrom);
    expect(looks()[3]!.at - lookAt).toBeLessThan(SLOW_INTERVAL + 200);
    expect(
      d.requests.some((r) => r.path.startsWith('/v1/catalog/') || r.path.startsWith('/v1/health/')),
    ).toBe(false);

    await within(
      back + LONG_TTL + LONG_TTL + SLOW_INTERVAL + 1000 - performance.now(),
      () => collided(m) || (slow.catalog().join() === `${id}@127.0.0.1` && slow.passing(id)),
      'moved to the default ID',
    );
    expect(slow.logsAt(m, 'error')).toEqual([]);
    expect(performance.now() - back).toBeGreaterThanOrEqual(LONG_TTL);
    expect(await metric(m.admin, RENAMED)).toBe(0);
    // The read held open on the holder's registration when the agent went down.
    expect(
      calls(`/v1/agent/service/${id}`).some((r) => r.at < downFrom && r.query.get('hash') !== null),
    ).toBe(true);
  }, 30_000);
});
