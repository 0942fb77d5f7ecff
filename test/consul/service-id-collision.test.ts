// Two instances sharing a service ID on one Consul agent: neither replaces the other's registration; the collision is logged and counted.
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import type { TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, consulRegistry, metric, within } from './consul-helpers.ts';
import { ONE_AT_A_TIME, REFUSED, RENAMED, serviceIdFixture, SIDE_BY_SIDE } from './service-id-fixtures.ts';

const INTERVAL = 200;

/** The fixture of one `describe`: its own double, app and default ID, so the file's `describe`s run side by side. */
const suite = () => serviceIdFixture({ interval: INTERVAL, timeout: 150 });

function errors(m: InProcessMeshlet): Record<string, unknown>[] {
  return m.logs.filter((l) => l.level === 'error');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('two instances with the same default service ID on one agent', SIDE_BY_SIDE, () => {
  const fx = suite();
  const { web, stop, catalog, passing, registeredIds, registerByHand, anotherInstanceTakesDefaultId } = fx;
  let double: ConsulDouble;
  let app: TestUpstream;
  /** The default ID both instances would take: `web-<hostname>-<app port>`. */
  let defaultId: string;
  beforeAll(() => {
    ({ double, app, defaultId } = fx);
  });

  it(
    'the second registers under a distinct ID; both stay in the catalog; one error, counted; each deregisters only its own',
    ONE_AT_A_TIME,
    async () => {
      const a = await web('127.0.0.1');
      await within(3000, () => passing(defaultId), 'a registered');
      const b = await web('127.0.0.2');
      const bId = `${defaultId}-127.0.0.2`;
      await within(3000, () => passing(bId), 'b registered under a distinct ID');

      // Several check intervals later, neither has replaced the other: no flapping.
      await sleep(5 * INTERVAL);
      expect(catalog()).toEqual([`${defaultId}@127.0.0.1`, `${bId}@127.0.0.2`].sort());
      expect(passing(defaultId) && passing(bId)).toBe(true);
      expect(registeredIds('127.0.0.2').every((id) => id === bId)).toBe(true);
      expect(registeredIds('127.0.0.2').length).toBeGreaterThan(0);
      const health = await request(`${double.url}/v1/health/service/web?passing`);
      expect(((await health.body.json()) as unknown[]).length).toBe(2);

      // One error line from b, naming both instances and the key that fixes it; none from a.
      const said = errors(b);
      expect(said).toHaveLength(1);
      expect(said[0]).toMatchObject({
        heldId: defaultId,
        heldBy: `127.0.0.1:${app.port}`,
        serviceId: bId,
        instance: `127.0.0.2:${app.port}`,
      });
      expect(String(said[0]!.msg)).toContain('registry.serviceId');
      expect(errors(a)).toEqual([]);
      expect(await metric(b.admin, RENAMED)).toBe(1);
      expect(await metric(a.admin, RENAMED)).toBe(0);
      const status = await adminGet<{
        registry: { registration: { serviceId: string; registered: boolean } };
      }>(b.admin, '/upstreams');
      expect(status.body.registry.registration).toMatchObject({ serviceId: bId, registered: true });

      // b's shutdown deregisters b's ID only; a stays registered and passing.
      await stop(b);
      expect(catalog()).toEqual([`${defaultId}@127.0.0.1`]);
      const deregistered = double.requests
        .filter((r) => r.path.startsWith('/v1/agent/service/deregister/'))
        .map((r) => r.path);
      expect(deregistered).toEqual([`/v1/agent/service/deregister/${bId}`]);
      await sleep(2 * INTERVAL);
      expect(passing(defaultId)).toBe(true);
      await stop(a);
      expect(catalog()).toEqual([]);
    },
  );

  it(
    'a restart (the same address and port already registered by an earlier run) takes the ID over without an error',
    ONE_AT_A_TIME,
    async () => {
      await registerByHand({
        ID: defaultId,
        Name: 'web',
        Address: '127.0.0.1',
        Port: app.port,
        Check: { CheckID: `service:${defaultId}`, Name: 'earlier run', TTL: '60s', Status: 'passing' },
      });
      const m = await web('127.0.0.1');
      await within(3000, () => registeredIds('127.0.0.1').length > 0 && passing(defaultId), 'registered');
      await sleep(2 * INTERVAL);
      expect(catalog()).toEqual([`${defaultId}@127.0.0.1`]);
      expect(registeredIds('127.0.0.1').every((id) => id === defaultId)).toBe(true);
      expect(errors(m)).toEqual([]);
      expect(await metric(m.admin, RENAMED)).toBe(0);
      expect(await metric(m.admin, REFUSED)).toBe(0);
    },
  );

  it(
    "another instance's registration whose TTL check expired is taken over (a warning, no collision)",
    ONE_AT_A_TIME,
    async () => {
      await registerByHand({
        ID: defaultId,
        Name: 'web',
        Address: '127.0.0.3',
        Port: app.port,
        Check: { CheckID: `service:${defaultId}`, Name: 'gone', TTL: '100ms', Status: 'passing' },
      });
      await within(2000, () => double.checks(defaultId)[0]?.output === 'TTL expired', 'TTL expired');
      const m = await web('127.0.0.1');
      await within(3000, () => catalog()[0] === `${defaultId}@127.0.0.1` && passing(defaultId), 'taken over');
      expect(catalog()).toHaveLength(1);
      expect(errors(m)).toEqual([]);
      expect(m.logs.some((l) => l.level === 'warn' && String(l.msg).includes('TTL check expired'))).toBe(
        true,
      );
      expect(await metric(m.admin, RENAMED)).toBe(0);
    },
  );

  it(
    '"Consul lost this instance" does not take the ID back from the instance now holding it',
    ONE_AT_A_TIME,
    async () => {
      const m = await web('127.0.0.1');
      await within(3000, () => passing(defaultId), 'registered');
      await sleep(3 * INTERVAL); // past the tick that reads a new registration back
      // Another process registers the same ID (replacing meshlet's check): meshlet's next check update is a 404.
      await anotherInstanceTakesDefaultId();
      const moved = `${defaultId}-127.0.0.1`;
      await within(3000, () => passing(moved), 're-registered under a distinct ID');
      await sleep(5 * INTERVAL);
      expect(catalog()).toEqual([`${defaultId}@127.0.0.9`, `${moved}@127.0.0.1`].sort());
      expect(m.logs.some((l) => l.msg === 'Consul lost this instance; registering again')).toBe(true);
      expect(errors(m)).toHaveLength(1);
      expect(errors(m)[0]).toMatchObject({
        heldId: defaultId,
        heldBy: `127.0.0.9:${app.port}`,
        serviceId: moved,
      });
      expect(await metric(m.admin, RENAMED)).toBe(1);
      await stop(m);
      expect(catalog()).toEqual([`${defaultId}@127.0.0.9`]);
    },
  );
});

describe('two instances registering the same ID at the same moment', SIDE_BY_SIDE, () => {
  const fx = suite();
  const { stop, catalog, passing, registeredIds, registerByHand, started } = fx;
  let double: ConsulDouble;
  let app: TestUpstream;
  let defaultId: string;
  beforeAll(() => {
    ({ double, app, defaultId } = fx);
  });

  it('the one registered over finds out on its next check interval and moves to a distinct ID', async () => {
    const m = await startMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: consulRegistry(double, { check: { interval: 1000, timeout: 150 } }),
      shutdown: { drainDelay: 0 },
      accessLog: { enabled: false },
    });
    started.push(m);
    await within(3000, () => registeredIds('127.0.0.1').length > 0, 'registration sent');
    // Right after meshlet's registration, another instance that also saw the ID free registers it,
    // with the same check ID a meshlet would use: meshlet's check updates still succeed.
    await registerByHand({
      ID: defaultId,
      Name: 'web',
      Address: '127.0.0.2',
      Port: app.port,
      Check: { CheckID: `service:${defaultId}`, Name: 'the other', TTL: '1h', Status: 'passing' },
    });
    const moved = `${defaultId}-127.0.0.1`;
    await within(3000, () => passing(moved), 'moved to a distinct ID');
    expect(catalog()).toEqual([`${defaultId}@127.0.0.2`, `${moved}@127.0.0.1`].sort());
    expect(errors(m)).toHaveLength(1);
    expect(errors(m)[0]).toMatchObject({
      heldId: defaultId,
      heldBy: `127.0.0.2:${app.port}`,
      serviceId: moved,
    });
    // meshlet no longer reports through the other instance's check.
    const since = double.requests.length;
    await sleep(1200);
    const updates = double.requests.slice(since).filter((r) => r.path.startsWith('/v1/agent/check/update/'));
    expect(updates.length).toBeGreaterThan(0);
    expect(updates.every((r) => r.path === `/v1/agent/check/update/service:${moved}`)).toBe(true);
    await stop(m);
    expect(catalog()).toEqual([`${defaultId}@127.0.0.2`]);
  });
});

describe('two instances with the same registry.serviceId', SIDE_BY_SIDE, () => {
  const fx = suite();
  const { web, stop, catalog, passing, registeredIds } = fx;
  let app: TestUpstream;
  beforeAll(() => {
    ({ app } = fx);
  });

  it('the second does not register over the first (one error, counted) and registers once the ID is free', async () => {
    const a = await web('127.0.0.1', { serviceId: 'web-shared' });
    await within(3000, () => passing('web-shared'), 'a registered');
    const b = await web('127.0.0.2', { serviceId: 'web-shared' });
    await within(3000, () => errors(b).length > 0, 'b refused');
    await sleep(5 * INTERVAL);
    expect(catalog()).toEqual(['web-shared@127.0.0.1']);
    expect(registeredIds('127.0.0.2')).toEqual([]);
    const said = errors(b);
    expect(said).toHaveLength(1);
    expect(said[0]).toMatchObject({
      serviceId: 'web-shared',
      heldBy: `127.0.0.1:${app.port}`,
      instance: `127.0.0.2:${app.port}`,
    });
    expect(String(said[0]!.msg)).toContain('registry.serviceId');
    expect(await metric(b.admin, REFUSED)).toBe(1);
    const status = await adminGet<{
      registry: { registration: { registered: boolean; refusedBecause: string | null } };
    }>(b.admin, '/upstreams');
    expect(status.body.registry.registration.registered).toBe(false);
    expect(status.body.registry.registration.refusedBecause).toMatch(/another instance .*127\.0\.0\.1/);

    // The holder leaves: b registers under the ID it was given, within a few check intervals.
    await stop(a);
    await within(
      3000,
      () => catalog()[0] === 'web-shared@127.0.0.2' && passing('web-shared'),
      'b registered',
    );
    expect(errors(b)).toHaveLength(1);
    await stop(b);
    expect(catalog()).toEqual([]);
  });
});

describe('with the sidecar proxy registration', SIDE_BY_SIDE, () => {
  const fx = suite();
  const { withSidecar, stop, catalog, passing, anotherInstanceTakesDefaultId } = fx;
  let double: ConsulDouble;
  let defaultId: string;
  beforeAll(() => {
    ({ double, defaultId } = fx);
  });

  /** The proxies in the catalog as `id@address>DestinationServiceID`, sorted. */
  const proxies = (): string[] =>
    double
      .instances('web-sidecar-proxy')
      .map(
        (s) =>
          `${s.id}@${s.address}>${String((s.proxy as { DestinationServiceID?: string }).DestinationServiceID)}`,
      )
      .sort();

  it(
    'moving to a distinct ID after the proxy was registered: the proxy follows, its old registration is deregistered',
    ONE_AT_A_TIME,
    async () => {
      const m = await withSidecar('127.0.0.1', 21520);
      await within(5000, () => proxies().length === 1 && passing(defaultId), 'registered with its proxy');
      await sleep(3 * INTERVAL); // past the tick that reads a new registration back
      await anotherInstanceTakesDefaultId();
      const moved = `${defaultId}-127.0.0.1`;
      await within(
        3000,
        () => passing(moved) && proxies().length === 1 && proxies()[0]!.startsWith(moved),
        'moved',
      );
      expect(proxies()).toEqual([`${moved}-sidecar-proxy@127.0.0.1>${moved}`]);
      expect(catalog()).toEqual([`${defaultId}@127.0.0.9`, `${moved}@127.0.0.1`].sort());
      await stop(m);
      expect(proxies()).toEqual([]);
      expect(catalog()).toEqual([`${defaultId}@127.0.0.9`]);
    },
  );

  it(
    "the second instance's sidecar proxy follows its distinct ID; the first's is left alone",
    ONE_AT_A_TIME,
    async () => {
      const a = await withSidecar('127.0.0.1', 21500);
      await within(5000, () => double.instances('web-sidecar-proxy').length === 1, 'a sidecar registered');
      const b = await withSidecar('127.0.0.2', 21510);
      const bId = `${defaultId}-127.0.0.2`;
      await within(
        5000,
        () => double.instances('web-sidecar-proxy').length === 2 && passing(bId),
        'b and its sidecar registered',
      );
      await sleep(3 * INTERVAL);
      expect(proxies()).toEqual([
        `${bId}-sidecar-proxy@127.0.0.2>${bId}`,
        `${defaultId}-sidecar-proxy@127.0.0.1>${defaultId}`,
      ]);
      expect(catalog()).toEqual([`${defaultId}@127.0.0.1`, `${bId}@127.0.0.2`].sort());
      expect(errors(a)).toEqual([]);
      // Called a collision once a's check stayed refreshed through b's watch (one TTL and one interval).
      await within(3000, () => errors(b).length > 0, 'the collision called');
      expect(errors(b)).toHaveLength(1);
      await stop(b);
      expect(double.instances('web-sidecar-proxy').map((s) => s.id)).toEqual([`${defaultId}-sidecar-proxy`]);
      await stop(a);
    },
  );
});
