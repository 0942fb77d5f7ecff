// etcd and Redis: the backend stopped (SIGKILL or SIGSTOP, by PID) while meshlet watches a crashed run's key or moves from its interim key to the default one; it ends with one record of its own, under the default ID.
import { hostname } from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { adminGet, metric } from '../consul/consul-helpers.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream } from '../helpers/upstream-server.ts';
import { etcdOutage, type OutageBackend, redisOutage } from './kv-outage-backends.ts';

const INTERVAL = 200;
/**
 * The lease / key TTL of the meshlet and of the crashed run's key, ms (etcd: whole seconds): long
 * enough that a slow start (a loaded machine) still finds the crashed run's key.
 */
const TTL = 3000;
/** How long meshlet's calls to the backend wait, ms (a frozen backend answers nothing). */
const CALL_TIMEOUT = 1000;
/** How long the backend stays stopped, ms: past the end of the newcomer's watch (TTL, etcd's lease check, an interval). */
const DOWN = TTL + 1000;
/** The longest etcd keeps a key after its lease's TTL ran out, ms (its lease check). */
const LEASE_CHECK = 500;
/** One heartbeat of meshlet's own key (a third of its TTL), the check interval that writes it again, and slack, ms. */
const ONE_HEARTBEAT = TTL / 3 + INTERVAL + CALL_TIMEOUT;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Registration = { serviceId: string; key: string; registered: boolean; refusedBecause: string | null };

/** How the backend is stopped, and when. */
interface Outage {
  /** `kill`: SIGKILL, then started again on the same port; `freeze`: SIGSTOP, then SIGCONT. */
  how: 'kill' | 'freeze';
  /** `expiry`: the moment the crashed run's key is gone; `watch`: while it still lives (half its TTL left). */
  when: 'expiry' | 'watch';
  /** The meshlet sets `registry.serviceId: web-1` (the crashed run's ID): it writes nothing until that key is gone. */
  explicit?: boolean;
}

/** What the test saw from the backend's return until meshlet's record settled, ms. */
interface Settled {
  /** The longest stretch with no key of this instance's. */
  noneMs: number;
  /** The longest stretch with both its interim and default keys. */
  bothMs: number;
}

/**
 * Runs one outage against a fresh backend: a crashed run's key (10.0.0.3) holds the default ID (or
 * `web-1`, the explicit ID) and a bystander's key another ID; a meshlet at 127.0.0.1 starts (written
 * aside, or not written, watching), the backend is stopped as `outage` says for {@link DOWN} ms and
 * comes back; then the meshlet must settle under the crashed run's ID alone, /upstreams must say so,
 * nothing counted, and its shutdown must leave only the bystander's key.
 */
function outageCase(make: () => Promise<OutageBackend>, outage: Outage): Promise<Settled> {
  return inSlot(() => outageRun(make, outage));
}

async function outageRun(make: () => Promise<OutageBackend>, outage: Outage): Promise<Settled> {
  const backend = await make();
  const app = await startUpstream();
  let m: InProcessMeshlet | null = null;
  try {
    // The crashed run's ID, which the meshlet ends under; its interim one (null with an explicit ID).
    const defaultId = outage.explicit === true ? 'web-1' : `web-${hostname()}-${app.port}`;
    const aside = outage.explicit === true ? null : `${defaultId}-127.0.0.1`;
    const record = (id: string, address: string) => ({
      id,
      service: 'web',
      address,
      port: app.port,
      status: 'passing',
    });
    await backend.put('web-bystander', record('web-bystander', '10.0.0.8'), 60_000);
    const crashedAt = performance.now();
    await backend.put(defaultId, record(defaultId, '10.0.0.3'), TTL);
    m = await startMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: backend.registry(TTL, CALL_TIMEOUT, {
        check: { interval: INTERVAL, timeout: 150 },
        ...(outage.explicit === true ? { serviceId: defaultId } : {}),
      }),
      shutdown: { drainDelay: 0 },
      accessLog: { enabled: false },
    });
    const ours = (k: Record<string, { address: string }>) =>
      Object.entries(k)
        .filter(([, v]) => v.address === '127.0.0.1')
        .map(([id]) => id)
        .sort();
    await poll(
      3000,
      async () => {
        const k = await backend.web();
        const waiting = m!.logs.some((l) => l.level === 'warn' && String(l.msg).includes('has not expired'));
        return k !== null && waiting && ours(k).join() === (aside ?? '');
      },
      'written aside (or nothing written), watching',
    );
    expect((await backend.web())![defaultId]?.address).toBe('10.0.0.3');

    if (outage.when === 'expiry') {
      await poll(
        TTL + LEASE_CHECK + 2000,
        // Gone, or already this meshlet's (it moved between two reads of a slow machine): stopped right after.
        async () => {
          const k = await backend.web();
          return k !== null && k[defaultId]?.address !== '10.0.0.3';
        },
        'the crashed run’s key expired',
      );
    } else {
      await sleep(Math.max(0, crashedAt + TTL / 2 - performance.now()));
      expect((await backend.web())?.[defaultId]?.address).toBe('10.0.0.3');
    }
    if (outage.how === 'kill') {
      await backend.kill();
      await sleep(DOWN);
      await backend.restart();
    } else {
      backend.freeze();
      await sleep(DOWN);
      backend.thaw();
    }

    // Until settled: the longest stretches with none and with both of its keys, as read.
    let last = '';
    let noneSince: number | null = null;
    let bothSince: number | null = null;
    const seen = { noneMs: 0, bothMs: 0 };
    // etcd renews the leases when it comes back (their TTL and its election timeout again): the crashed
    // run's key may live up to two leases from here, then the move takes a check interval.
    const settledWithin = 2 * (TTL + LEASE_CHECK) + 2 * INTERVAL + CALL_TIMEOUT + 1000;
    await poll(
      settledWithin,
      async () => {
        const k = await backend.web();
        const now = performance.now();
        if (k === null) return false;
        const mine = ours(k);
        noneSince = mine.length === 0 ? (noneSince ?? now) : null;
        bothSince =
          aside !== null && mine.includes(aside) && mine.includes(defaultId) ? (bothSince ?? now) : null;
        seen.noneMs = Math.max(seen.noneMs, noneSince === null ? 0 : now - noneSince);
        seen.bothMs = Math.max(seen.bothMs, bothSince === null ? 0 : now - bothSince);
        last = JSON.stringify(k);
        return mine.join() === defaultId && k[defaultId]!.status === 'passing';
      },
      () =>
        `settled under the default ID (last read: ${last}; warnings and errors: ${JSON.stringify(
          m!.logs.filter((l) => l.level === 'warn' || l.level === 'error'),
        )})`,
    );

    // It stays so past one more TTL: one record of its own, the bystander's untouched.
    await sleep(TTL + LEASE_CHECK + INTERVAL);
    const after = (await backend.web())!;
    expect(ours(after)).toEqual([defaultId]);
    expect(Object.keys(after).sort()).toEqual([defaultId, 'web-bystander'].sort());
    const reg = (await adminGet<{ registry: { registration: Registration } }>(m.admin, '/upstreams')).body
      .registry.registration;
    expect(reg).toMatchObject({
      serviceId: defaultId,
      key: backend.keyOf(defaultId),
      registered: true,
      refusedBecause: null,
    });
    expect(
      await metric(
        m.admin,
        `meshlet_registry_${backend.type}_service_id_collisions_total{outcome="renamed"}`,
      ),
    ).toBe(0);
    expect(
      await metric(
        m.admin,
        `meshlet_registry_${backend.type}_service_id_collisions_total{outcome="refused"}`,
      ),
    ).toBe(0);
    expect(m.logs.filter((l) => l.level === 'error' && String(l.msg).includes('another instance'))).toEqual(
      [],
    );

    const stopping = m;
    m = null;
    await stopping.close();
    expect(Object.keys((await backend.web())!)).toEqual(['web-bystander']);
    return seen;
  } finally {
    await m?.close();
    await app.close();
    await backend.close();
  }
}

/** How many cases run at once: each starts a backend process and meshlets, whose timing a loaded machine stretches. */
const SLOTS = 3;
let free = SLOTS;
const queued: (() => void)[] = [];
/** Runs `run` in one of the {@link SLOTS} (waiting for one), then frees it for the next case. */
async function inSlot<T>(run: () => Promise<T>): Promise<T> {
  if (free > 0) free--;
  else await new Promise<void>((resolve) => queued.push(resolve));
  try {
    return await run();
  } finally {
    const next = queued.shift();
    if (next === undefined) free++;
    else next();
  }
}

// A process's first meshlet starts slowest (its code not yet compiled): one on the static registry is
// started and stopped here, so no case's TTL pays for it.
beforeAll(async () => {
  const app = await startUpstream();
  try {
    const warmUp = await startMeshlet({
      service: { name: 'warm-up', port: app.port, address: '127.0.0.1' },
      shutdown: { drainDelay: 0 },
      accessLog: { enabled: false },
    });
    await warmUp.close();
  } finally {
    await app.close();
  }
});

/** Polls `probe` every 20 ms until true; rejects after `timeoutMs`. */
async function poll(
  timeoutMs: number,
  probe: () => Promise<boolean>,
  what: string | (() => string),
): Promise<void> {
  const from = performance.now();
  while (!(await probe())) {
    if (performance.now() - from > timeoutMs)
      throw new Error(`${typeof what === 'string' ? what : what()}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
}

describe.concurrent.each([
  ['etcd', etcdOutage],
  ['redis', redisOutage],
] as const)('%s stopped while meshlet waits aside for a crashed run’s key', (_name, make) => {
  /** Asserts what settling took: never without a key of its own, never both keys, longer than allowed. */
  function expectSettled(s: Settled): void {
    expect(s.noneMs).toBeLessThan(ONE_HEARTBEAT);
    expect(s.bothMs).toBeLessThan(TTL + LEASE_CHECK);
  }

  it('SIGKILLed the moment the crashed run’s key expires, started again: moves to the default ID, one record', async () => {
    expectSettled(await outageCase(make, { how: 'kill', when: 'expiry' }));
  }, 90_000);

  it('SIGKILLed while the crashed run’s key lives, started again past the watch: still moves to the default ID once that key is gone, no collision', async () => {
    expectSettled(await outageCase(make, { how: 'kill', when: 'watch' }));
  }, 90_000);

  it('SIGSTOPped the moment the crashed run’s key expires, past its own TTL, then resumed: moves to the default ID, one record', async () => {
    expectSettled(await outageCase(make, { how: 'freeze', when: 'expiry' }));
  }, 90_000);

  it('SIGSTOPped while the crashed run’s key lives, past every TTL, then resumed: moves to the default ID, one record', async () => {
    expectSettled(await outageCase(make, { how: 'freeze', when: 'watch' }));
  }, 90_000);

  it('with registry.serviceId, SIGKILLed while the crashed run’s key lives, started again past the watch: writes that ID once the key is gone, no refusal', async () => {
    await outageCase(make, { how: 'kill', when: 'watch', explicit: true });
  }, 90_000);
});

describe('etcd restarted while a newcomer watches a live instance’s key', () => {
  it('the watch starts over when etcd is back: the collision is called once the holder’s key outlived it, the newcomer stays aside, the holder keeps its key', async () => {
    await inSlot(liveHolderRun);
  }, 90_000);
});

/** {@link outageCase} for a live holder: a meshlet at 127.0.0.1 holds the default ID, a newcomer at 127.0.0.2 watches it through an etcd restart. */
async function liveHolderRun(): Promise<void> {
  const backend = await etcdOutage();
  const app = await startUpstream();
  const started: InProcessMeshlet[] = [];
  try {
    const defaultId = `web-${hostname()}-${app.port}`;
    const aside = `${defaultId}-127.0.0.2`;
    const web = async (address: string) => {
      const m = await startMeshlet({
        service: { name: 'web', port: app.port, address },
        registry: backend.registry(TTL, CALL_TIMEOUT, { check: { interval: INTERVAL, timeout: 150 } }),
        shutdown: { drainDelay: 0 },
        accessLog: { enabled: false },
      });
      started.push(m);
      return m;
    };
    const keys = async () =>
      Object.entries((await backend.web()) ?? {})
        .map(([id, v]) => `${id}@${v.address}`)
        .sort();
    const a = await web('127.0.0.1');
    await poll(3000, async () => (await keys()).includes(`${defaultId}@127.0.0.1`), 'a registered');
    const b = await web('127.0.0.2');
    await poll(3000, async () => (await keys()).includes(`${aside}@127.0.0.2`), 'b written aside');
    await sleep(3 * INTERVAL);
    await backend.kill();
    await sleep(DOWN);
    await backend.restart();
    const upAt = performance.now();
    const errors = () =>
      b.logs.filter((l) => l.level === 'error' && String(l.msg).includes('another instance'));
    // The restarted watch: one lease and an interval, plus one lease for etcd's renewal, from b's first answer.
    const watch = 2 * (TTL + LEASE_CHECK) + INTERVAL;
    await poll(watch + CALL_TIMEOUT + 2000, async () => errors().length > 0, 'the collision called');
    expect(performance.now() - upAt).toBeGreaterThanOrEqual(watch - INTERVAL);
    expect(errors()).toHaveLength(1);
    expect(errors()[0]).toMatchObject({
      heldId: defaultId,
      heldBy: `127.0.0.1:${app.port}`,
      serviceId: aside,
    });
    expect(
      await metric(b.admin, 'meshlet_registry_etcd_service_id_collisions_total{outcome="renamed"}'),
    ).toBe(1);
    await sleep(3 * INTERVAL);
    expect(await keys()).toEqual([`${defaultId}@127.0.0.1`, `${aside}@127.0.0.2`].sort());
    const reg = (await adminGet<{ registry: { registration: Registration } }>(b.admin, '/upstreams')).body
      .registry.registration;
    expect(reg).toMatchObject({ serviceId: aside, key: backend.keyOf(aside), registered: true });
    expect(a.logs.filter((l) => l.level === 'error' && String(l.msg).includes('another instance'))).toEqual(
      [],
    );
    for (const m of started.splice(0)) await m.close();
    expect(await keys()).toEqual([]);
  } finally {
    for (const m of started) await m.close();
    await app.close();
    await backend.close();
  }
}

describe('etcd restarted between two of the newcomer’s looks at a crashed run’s key', () => {
  it('no call of the newcomer’s fails, yet the restart renewed that key’s lease: the new raft term starts the watch over, and it moves once the key is gone', async () => {
    await inSlot(unseenRestartRun);
  }, 90_000);
});

/**
 * A check interval (2.5 s) longer than etcd's restart, a lease TTL (4 s) that outlives the first
 * look: etcd is SIGKILLed right after the newcomer's first look after its start and started again at
 * once, so its next look answers (no failure seen) while the crashed run's lease, renewed by the
 * restart, outlives the watch counted from the start.
 */
async function unseenRestartRun(): Promise<void> {
  const interval = 2500;
  const ttl = 4000;
  const backend = await etcdOutage();
  const app = await startUpstream();
  let m: InProcessMeshlet | null = null;
  try {
    const defaultId = `web-${hostname()}-${app.port}`;
    const aside = `${defaultId}-127.0.0.1`;
    const keys = async () =>
      Object.entries((await backend.web()) ?? {})
        .map(([id, v]) => `${id}@${v.address}`)
        .sort();
    await backend.put(defaultId, { id: defaultId, service: 'web', address: '10.0.0.3', port: app.port }, ttl);
    m = await startMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: backend.registry(ttl, CALL_TIMEOUT, { check: { interval, timeout: 150 } }),
      shutdown: { drainDelay: 0 },
      accessLog: { enabled: false },
    });
    await poll(3000, async () => (await keys()).includes(`${aside}@127.0.0.1`), 'written aside');
    const asideAt = performance.now();
    // Right after the first look past the start (one interval later): killed and started again at once.
    await sleep(interval + 300);
    expect(await keys()).toContain(`${defaultId}@10.0.0.3`);
    await backend.kill();
    await backend.restart();
    const failures = () =>
      m!.logs.filter((l) => l.level === 'error' && String(l.msg).includes('another instance'));
    // The renewed lease lives one TTL and etcd's election timeout past the restart; the move follows at a look.
    await poll(
      2 * (ttl + LEASE_CHECK) + 2 * interval,
      async () => (await keys()).join() === `${defaultId}@127.0.0.1`,
      () => `moved to the default ID (errors: ${JSON.stringify(failures())})`,
    );
    // The key outlived the watch counted from the start: only the new term told the newcomer to wait on.
    expect(performance.now() - asideAt).toBeGreaterThan(ttl + LEASE_CHECK + interval);
    expect(failures()).toEqual([]);
    expect(
      await metric(m.admin, 'meshlet_registry_etcd_service_id_collisions_total{outcome="renamed"}'),
    ).toBe(0);
    const reg = (await adminGet<{ registry: { registration: Registration } }>(m.admin, '/upstreams')).body
      .registry.registration;
    expect(reg).toMatchObject({ serviceId: defaultId, key: backend.keyOf(defaultId), registered: true });
    const stopping = m;
    m = null;
    await stopping.close();
    expect(await keys()).toEqual([]);
  } finally {
    await m?.close();
    await app.close();
    await backend.close();
  }
}
