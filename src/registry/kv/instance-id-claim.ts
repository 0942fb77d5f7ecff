// Picks the etcd/Redis key this instance's record lives under, so it never replaces another live instance's record; moves to the default ID once a crashed earlier run's key expires.
import type { Logger } from '../../telemetry/logger.ts';
import { candidateIds, describeInstance, type Instance } from '../consul/service-id-claim.ts';
import { type HolderVerdict, HolderWait } from '../holder-wait.ts';
import { parseRecord } from './instance-record.ts';
import type { RegistryMetrics } from './registry-metrics.ts';

/**
 * What a conditional write expects the key to hold: nothing (`absent`), this instance's record
 * (`mine`: under its lease in etcd, the value it last wrote in Redis), or exactly what a read saw
 * (`seen`, with the store's version of it: the mod revision in etcd, the value in Redis).
 */
export type Expect = { kind: 'absent' } | { kind: 'mine' } | { kind: 'seen'; version: string };

/** What a key holds when a conditional write did not apply. */
export interface Held {
  value: string;
  /** What an `Expect` of kind `seen` compares to take this over. */
  version: string;
  /** True when it is this instance's own record (its lease, or the value it wrote). */
  mine: boolean;
}

/**
 * One atomic attempt: writes the record under `id` when the key holds what `expect` says; else what
 * it holds (null: nothing). `term`: the store's leadership term of the answer (etcd's raft term),
 * undefined for a store without one: a new term means a new leader, which renewed every lease.
 */
export type ConditionalPut = (
  id: string,
  expect: Expect,
) => Promise<({ written: true } | { written: false; held: Held | null }) & { term?: string }>;

/**
 * One atomic attempt: deletes the key of `id` while it holds this instance's record of this run
 * (under its lease in etcd, a value it wrote in Redis); true when deleted, false when it held
 * anything else or nothing (left as it is).
 */
export type ConditionalDelete = (id: string) => Promise<boolean>;

/** The store refused to write: live instances hold every key this instance may use (retried every check interval). */
export class IdRefusedError extends Error {
  override readonly name = 'IdRefusedError';
}

/** Attempts per key when it changes between a read and the conditional write (other writers racing). */
const MAX_ATTEMPTS = 5;

/** The address and port a stored value names, or null when it is no valid record (as discovery reads it). */
export function recordHolder(value: string): Instance | null {
  const parsed = parseRecord(value);
  return 'invalid' in parsed ? null : { address: parsed.address, port: parsed.port };
}

/** Whether `value` names `self` (its address and port): this instance's own record, from this run or an earlier one. */
export function namesSelf(value: string, self: Instance): boolean {
  const h = recordHolder(value);
  return h !== null && h.address === self.address && h.port === self.port;
}

/** What this instance registers as, for {@link InstanceIdClaim}. */
export interface ClaimSpec extends Instance {
  /** The configured ID: `registry.serviceId`, else `<service.name>-<hostname>-<service.port>`. */
  id: string;
  /** True when `registry.serviceId` set `id`: it is then never replaced by a distinct ID. */
  explicitId: boolean;
}

/** A candidate another instance holds: who (null for a value that is no valid record) and how logs name it. */
interface Passed {
  id: string;
  holder: Instance | null;
  heldBy: string;
}

/**
 * The instance's service ID in a key-value registry. etcd and Redis are shared by the whole
 * cluster, so two instances with the same default ID (the same service name, hostname and port:
 * pods of one name in two namespaces, two compose projects) would write the same key, each
 * replacing the other's record and deleting it at shutdown. Every write here is conditional: a
 * key that is free, this instance's own, or names this instance's address and port (its earlier
 * run) is written; a key holding any other value is never written over.
 *
 * Before the first write a key held at another address may be this instance's own run that crashed
 * moments ago (a pod re-created at a new address keeps its hostname, so its default ID): its key
 * lives until its lease or TTL runs out. It is watched for `graceMs` ({@link HolderWait}: one TTL
 * and one check interval) with a warning and no error. A default ID's instance writes under
 * `<id>-<address>` meanwhile; if the held key expires within the watch, {@link followUp} writes
 * under the default ID and only then deletes the interim key. An explicit ID's instance writes
 * nothing until the key expires. A key still held after the watch is a live instance's: a default
 * ID is then replaced by a distinct one for the run (the same {@link candidateIds} as Consul's), an
 * ID `registry.serviceId` sets is not written until it is free; either way one error is logged per
 * distinct situation and counted in `meshlet_registry_<type>_service_id_collisions_total{outcome}`.
 * A key held by another instance after this run's first write is a live instance's at once.
 */
export class InstanceIdClaim {
  readonly #spec: ClaimSpec;
  readonly #candidates: string[];
  readonly #type: string;
  readonly #metrics: RegistryMetrics;
  readonly #logger: Logger;
  /** Watches a live-looking holder of the ID seen before the first write: it may be this instance's crashed predecessor. */
  readonly #wait: HolderWait;
  #index = 0;
  #collision: string | null = null;
  #refusal: string | null = null;
  /** The default ID while written under `<id>-<address>` and watching its holder, else null. */
  #watched: string | null = null;
  /** The interim ID right after moving to the default one, until its key is deleted; else null. */
  #stale: string | null = null;
  /** What was last said about a failed delete of {@link #stale} (logged once). */
  #staleFailure: string | null = null;
  /** The store's leadership term of the last answer (etcd's raft term), or undefined. */
  #term: string | undefined;

  /**
   * @param deps.graceMs How long a live-looking holder is watched before it is called another
   *   live instance, ms: the key's lease or TTL plus one check interval.
   * @param deps.renewalMs How much longer that watch lasts when it started over after the store did
   *   not answer, ms: the longest the store may put a key's expiry off when it comes back (etcd:
   *   one lease TTL; default 0).
   */
  constructor(
    spec: ClaimSpec,
    deps: { type: string; metrics: RegistryMetrics; logger: Logger; graceMs: number; renewalMs?: number },
  ) {
    this.#spec = spec;
    this.#candidates = candidateIds(spec.id, spec, spec.explicitId);
    this.#type = deps.type;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
    this.#wait = new HolderWait(deps.graceMs, deps.renewalMs);
  }

  /** The ID written under (or to be tried next): the configured one unless another instance holds it. */
  get id(): string {
    return this.#candidates[this.#index]!;
  }

  /** Every ID whose key this run may hold: {@link id}, and the interim one while its key is not deleted yet. */
  get held(): string[] {
    return this.#stale === null || this.#stale === this.id ? [this.id] : [this.id, this.#stale];
  }

  /** Why the last write was refused (another instance holds every candidate, or the watch waits), or null. */
  get refusal(): string | null {
    return this.#refusal;
  }

  /** How a live-looking holder lapses in this store: an etcd lease, a Redis key's TTL. */
  get #expiry(): string {
    return this.#type === 'etcd' ? 'lease' : 'TTL';
  }

  /**
   * Writes through `put` under the current ID, or the next candidate another live instance does not
   * hold. `mine`: the store believes it holds the current key (tried first as `mine`). Rejects with
   * {@link IdRefusedError} when live instances hold every candidate (or an explicit ID's holder is
   * watched), and with the store's error when it fails (a watch of a holder then starts over).
   */
  async write(put: ConditionalPut, mine: boolean): Promise<void> {
    const askedAt = performance.now();
    const passed: Passed[] = [];
    for (let i = this.#index; i < this.#candidates.length; i++) {
      const id = this.#candidates[i]!;
      const held = await this.#put(put, id, mine && i === this.#index).catch((err: unknown) => {
        this.#wait.interrupted();
        throw err;
      });
      if (held === null) {
        this.#took(i, passed, askedAt);
        return;
      }
      passed.push(held);
    }
    if (this.#verdict(passed, askedAt) !== 'decided') throw new IdRefusedError(this.#refusal!);
    this.#refused(passed);
    throw new IdRefusedError(this.#refusal!);
  }

  /**
   * Every check interval while the record is stored. While written under the interim ID and
   * watching the default ID's holder: tries the default ID's key (written only when free, this
   * instance's, or naming its address and port). Written: this instance moved to it, and the interim
   * key is deleted next (true is returned: a new key holds the record). Still held by the holder
   * first seen, after `graceMs`, or held by another: a live instance, the collision is logged and
   * counted and the watch ends (the instance keeps its distinct ID for the run). A store failure is
   * tried again on the next call, and starts the watch over (see {@link HolderWait.interrupted}), as
   * does an answer under a new leadership term: a restarted etcd member renews the lease of a crashed
   * run's key. Then deletes the interim key when one is left ({@link dropStale}).
   */
  async followUp(put: ConditionalPut, drop: ConditionalDelete): Promise<boolean> {
    const watched = this.#watched;
    let moved = false;
    if (watched !== null) {
      const askedAt = performance.now();
      let held: Passed | null | undefined;
      try {
        held = await this.#put(put, watched, false);
      } catch {
        // The store did not answer: the holder's watch starts over at its next answer.
        held = undefined;
        this.#wait.interrupted();
      }
      if (held === null) {
        moved = true;
        await this.#moved(watched, drop);
      } else if (held !== undefined && this.#see(held, askedAt) !== 'waiting') {
        this.#watched = null;
        this.#wait.end();
        this.#renamed(held);
      }
    }
    if (!moved) await this.dropStale(drop);
    return moved;
  }

  /**
   * Deletes the interim key left by a move to the default ID while it holds this instance's record
   * (never another instance's), then forgets it; on failure it is tried again on the next check
   * interval (and at shutdown), with a warning once.
   */
  async dropStale(drop: ConditionalDelete): Promise<void> {
    const stale = this.#stale;
    if (stale === null) return;
    if (stale !== this.id) {
      try {
        if (await drop(stale))
          this.#logger.info({
            msg: `deleted an earlier key of this instance from ${this.#type}`,
            serviceId: stale,
          });
      } catch (err) {
        const reason = (err as Error).message;
        if (this.#staleFailure !== reason) {
          this.#staleFailure = reason;
          this.#logger.warn({
            msg: 'could not delete an earlier key of this instance; trying again every check interval and at shutdown',
            serviceId: stale,
            reason,
          });
        }
        return;
      }
    }
    if (this.#stale === stale) this.#stale = null;
    this.#staleFailure = null;
  }

  /** Written under `watched` (the default ID) while watching: it is the current ID now; the interim key is deleted. */
  async #moved(watched: string, drop: ConditionalDelete): Promise<void> {
    const interim = this.id;
    this.#index = this.#candidates.indexOf(watched);
    this.#stale = interim;
    this.#watched = null;
    this.#wait.end();
    this.#collision = null;
    this.#refusal = null;
    await this.dropStale(drop);
    this.#logger.info({
      msg: `the default service ID is free now (the ${this.#type} record holding it expired: a crashed earlier run's, or it left): registered under it, then deleted the interim key`,
      serviceId: this.id,
      interimId: interim,
      instance: describeInstance(this.#spec),
    });
  }

  /**
   * One key through `put`, retried while it changes under the write: null when written (free, this
   * instance's own, or naming its address and port), else who holds it.
   */
  async #put(put: ConditionalPut, id: string, mine: boolean): Promise<Passed | null> {
    let expect: Expect = mine ? { kind: 'mine' } : { kind: 'absent' };
    for (let attempt = 0; ; attempt++) {
      if (attempt === MAX_ATTEMPTS) throw new Error(`the ${this.#type} key of ${id} kept changing; retrying`);
      const out = await put(id, expect);
      this.#newTerm(out.term);
      if (out.written) return null;
      const held = out.held;
      if (held === null) expect = { kind: 'absent' };
      else if (held.mine) expect = { kind: 'mine' };
      else if (namesSelf(held.value, this.#spec)) expect = { kind: 'seen', version: held.version };
      else {
        const holder = recordHolder(held.value);
        return {
          id,
          holder,
          heldBy: holder === null ? 'a value that is no valid record' : describeInstance(holder),
        };
      }
    }
  }

  /**
   * A store answer's leadership term: a new one (etcd: a member became leader, as after a restart or
   * a leader switch, even one no call of this meshlet's saw) renewed every lease, a crashed run's too,
   * so a holder's watch starts over (see {@link HolderWait.interrupted}).
   */
  #newTerm(term: string | undefined): void {
    if (term === undefined) return;
    if (this.#term !== undefined && term !== this.#term) this.#wait.interrupted();
    this.#term = term;
  }

  /** The watch's verdict on a holder (a value that is no valid record is no crashed meshlet's: decided). */
  #see(held: Passed, askedAt: number): HolderVerdict {
    const passed = held.holder === null ? [] : [{ id: held.id, holder: held.holder }];
    return this.#wait.see({ passed }, askedAt, performance.now());
  }

  /**
   * The watch's verdict on the candidates a write passed, before the first write: `first` and
   * `waiting` while the first holder may be this instance's crashed predecessor (warned once; an
   * explicit ID's write is refused meanwhile, the reason in {@link refusal}). `decided` while
   * written under the interim ID (the watch runs in {@link followUp}) or once the watch ended.
   */
  #verdict(passed: Passed[], askedAt: number): HolderVerdict {
    const first = passed[0];
    if (first === undefined || this.#watched !== null) return 'decided';
    const verdict = this.#see(first, askedAt);
    if (verdict === 'decided') return verdict;
    const waiting = passed.length === this.#candidates.length - this.#index;
    if (waiting)
      this.#refusal = `waiting up to ${this.#wait.graceMs} ms for the record of service ID ${first.id} by ${first.heldBy} to expire (its ${this.#expiry} has not expired)`;
    if (verdict !== 'first') return verdict;
    const expiry = this.#expiry;
    const maybe = `a registration at another address holds this service ID in ${this.#type} and its ${expiry} has not expired: this instance's own earlier run that crashed (a pod re-created at a new address) or another live instance.`;
    if (waiting) {
      this.#logger.warn({
        msg: `${maybe} Not registering until its ${expiry} expires (then taking the ID over) or waitMs pass with it still refreshed (then it is another instance's)`,
        serviceId: first.id,
        heldBy: first.heldBy,
        instance: describeInstance(this.#spec),
        waitMs: this.#wait.graceMs,
      });
    } else {
      this.#logger.warn({
        msg: `${maybe} Registering under a distinct ID meanwhile; moving to this ID if its ${expiry} expires within waitMs, else it is another instance's (a collision)`,
        heldId: first.id,
        heldBy: first.heldBy,
        serviceId: this.#candidates[this.#index + passed.length],
        instance: describeInstance(this.#spec),
        waitMs: this.#wait.graceMs,
      });
    }
    return verdict;
  }

  /** Took candidate `i` after passing `passed`: a watched holder is warned about, a live one logged and counted once. */
  #took(i: number, passed: Passed[], askedAt: number): void {
    const verdict = this.#verdict(passed, askedAt);
    this.#index = i;
    this.#refusal = null;
    if (verdict !== 'decided') {
      this.#watched = passed[0]!.id;
      return;
    }
    if (this.#watched === null) this.#wait.end();
    const first = passed[0];
    if (first === undefined) this.#collision = null;
    else this.#renamed(first);
  }

  /** A live instance holds `held.id`, so this one writes under {@link id}: logged as an error and counted, once. */
  #renamed(held: Passed): void {
    const said = `renamed ${held.id}@${held.heldBy} to ${this.id}`;
    if (this.#collision === said) return;
    this.#collision = said;
    this.#metrics.idCollisions?.labels('renamed').inc();
    this.#logger.error({
      msg: `another instance holds this service ID in ${this.#type}; registering under a distinct ID instead of replacing it. Set registry.serviceId to give each instance its own ID`,
      heldId: held.id,
      heldBy: held.heldBy,
      serviceId: this.id,
      instance: describeInstance(this.#spec),
    });
  }

  #refused(passed: Passed[]): void {
    const first = passed[0]!;
    this.#refusal = `another instance (${first.heldBy}) holds service ID ${first.id} in ${this.#type}`;
    const said = `refused ${passed.map((p) => `${p.id}@${p.heldBy}`).join(',')}`;
    if (this.#collision === said) return;
    this.#collision = said;
    this.#metrics.idCollisions?.labels('refused').inc();
    this.#logger.error({
      msg: this.#spec.explicitId
        ? `another instance holds the service ID registry.serviceId sets in ${this.#type}; not registering over it (looking again every check interval). Give each instance its own registry.serviceId`
        : `other instances hold this service ID and its fallbacks in ${this.#type}; not registering over them (looking again every check interval). Set registry.serviceId to give each instance its own ID`,
      serviceId: first.id,
      heldBy: first.heldBy,
      instance: describeInstance(this.#spec),
      candidates: passed.map((p) => p.id),
    });
  }
}
