// The assertions shared by the Consul, etcd and Redis service ID tests: a live holder's ID is called a collision only once the wait is over; a crashed run's is waited out aside, then moved to quietly.
import { expect } from 'vitest';
import type { InProcessMeshlet } from '../helpers/meshlet.ts';
import { adminGet, metric, within } from './consul-helpers.ts';

/** The log lines of `m` at `level`. */
const logsAt = (m: InProcessMeshlet, level: string) => m.logs.filter((l) => l.level === level);

/** Who holds the ID, and who collided with it. */
export interface Collision {
  /** When the newcomer started watching the holder (`performance.now()`, ms). */
  waitingFrom: number;
  /** How long a live-looking holder is watched: one TTL and one check interval, ms. */
  graceMs: number;
  heldId: string;
  /** The holder's `address:port`. */
  heldBy: string;
  /** The distinct ID the newcomer is registered under. */
  serviceId: string;
  /** The `renamed` collision counter line of the registry. */
  renamed: string;
  /** Part of the warning the newcomer logs when it starts watching a live-looking holder. */
  waitWarning: string;
}

/**
 * Asserts the newcomer `m`, watching the holder, has no error, nothing counted and one wait warning
 * yet; then waits (up to `graceMs` + 3 s) for its collision error and asserts it came no sooner than
 * `graceMs` after `waitingFrom`, is the only error, names the holder, and is counted once.
 */
export async function expectCollisionCalled(m: InProcessMeshlet, c: Collision): Promise<void> {
  const errors = () => logsAt(m, 'error');
  expect(errors()).toEqual([]);
  expect(await metric(m.admin, c.renamed)).toBe(0);
  expect(logsAt(m, 'warn').filter((l) => String(l.msg).includes(c.waitWarning))).toHaveLength(1);
  await within(c.graceMs + 3000, () => errors().length > 0, 'the collision error');
  expect(performance.now() - c.waitingFrom).toBeGreaterThanOrEqual(c.graceMs);
  expect(errors()).toHaveLength(1);
  expect(errors()[0]).toMatchObject({ heldId: c.heldId, heldBy: c.heldBy, serviceId: c.serviceId });
  expect(await metric(m.admin, c.renamed)).toBe(1);
}

/** A newcomer that waited out a crashed run's registration and moved from its interim ID to the default one. */
export interface Moved {
  defaultId: string;
  /** The ID it was registered under while it waited. */
  interimId: string;
  /** The `renamed` and `refused` collision counter lines of the registry. */
  renamed: string;
  refused: string;
  /** Part of the warning it logged when it started watching the crashed run's registration. */
  waitWarning: string;
}

/**
 * Asserts `m` moved quietly: no error, the one wait warning, the move logged (info, naming both IDs),
 * no collision counted, and /upstreams showing it registered under the default ID.
 */
export async function expectMovedQuietly(m: InProcessMeshlet, c: Moved): Promise<void> {
  // The move is logged once the interim ID's deregistration is answered, which the catalog shows first.
  await within(
    2000,
    () => logsAt(m, 'info').some((l) => l.serviceId === c.defaultId && l.interimId === c.interimId),
    'the move logged (info, naming both IDs)',
  );
  expect(logsAt(m, 'error')).toEqual([]);
  expect(logsAt(m, 'warn').filter((l) => String(l.msg).includes(c.waitWarning))).toHaveLength(1);
  expect(await metric(m.admin, c.renamed)).toBe(0);
  expect(await metric(m.admin, c.refused)).toBe(0);
  const status = await adminGet<{ registry: { registration: unknown } }>(m.admin, '/upstreams');
  expect(status.body.registry.registration).toMatchObject({
    serviceId: c.defaultId,
    registered: true,
    refusedBecause: null,
  });
}

/** A newcomer registered aside while a crashed run's registration of the default ID still looks live. */
export interface WaitingAside {
  /** The `renamed` collision counter's value, read while it waits. */
  renamed: number;
  /** Its registration state on /upstreams, read while it waits. */
  registration: unknown;
  heldId: string;
  /** The crashed run's `address:port`. */
  heldBy: string;
  interimId: string;
  /** The newcomer's `address:port`. */
  instance: string;
  /** How long it watches the holder, ms. */
  graceMs: number;
  /** Part of the warning it logs when it starts watching. */
  waitWarning: string;
}

/** Asserts `m` waits aside: no error, nothing counted, registered under the interim ID, one wait warning naming both and the wait. */
export function expectWaitingAside(m: InProcessMeshlet, w: WaitingAside): void {
  expect(logsAt(m, 'error')).toEqual([]);
  expect(w.renamed).toBe(0);
  expect(w.registration).toMatchObject({ serviceId: w.interimId, registered: true, refusedBecause: null });
  const warnings = logsAt(m, 'warn').filter((l) => String(l.msg).includes(w.waitWarning));
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatchObject({
    heldId: w.heldId,
    heldBy: w.heldBy,
    serviceId: w.interimId,
    instance: w.instance,
    waitMs: w.graceMs,
  });
}
