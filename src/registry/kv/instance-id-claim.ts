// Picks the etcd/Redis key this instance's record lives under, so it never replaces another live instance's record.
import type { Logger } from '../../telemetry/logger.ts';
import { candidateIds, describeInstance, type Instance } from '../consul/service-id-claim.ts';
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

/** One atomic attempt: writes the record under `id` when the key holds what `expect` says; else what it holds (null: nothing). */
export type ConditionalPut = (
  id: string,
  expect: Expect,
) => Promise<{ written: true } | { written: false; held: Held | null }>;

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

/**
 * The instance's service ID in a key-value registry. etcd and Redis are shared by the whole
 * cluster, so two instances with the same default ID (the same service name, hostname and port:
 * pods of one name in two namespaces, two compose projects) would write the same key, each
 * replacing the other's record and deleting it at shutdown. Every write here is conditional: a
 * key that is free, this instance's own, or names this instance's address and port (its earlier
 * run) is written; a key holding any other value (a live instance: a dead one's key expired with
 * its lease or TTL) is never written over. A default ID is then replaced by a distinct one (the
 * same {@link candidateIds} as Consul's), an ID `registry.serviceId` sets is not written until it
 * is free; either way one error is logged per distinct situation and counted in
 * `meshlet_registry_<type>_service_id_collisions_total{outcome}`.
 */
export class InstanceIdClaim {
  readonly #spec: ClaimSpec;
  readonly #candidates: string[];
  readonly #type: string;
  readonly #metrics: RegistryMetrics;
  readonly #logger: Logger;
  #index = 0;
  #collision: string | null = null;
  #refusal: string | null = null;

  constructor(spec: ClaimSpec, deps: { type: string; metrics: RegistryMetrics; logger: Logger }) {
    this.#spec = spec;
    this.#candidates = candidateIds(spec.id, spec, spec.explicitId);
    this.#type = deps.type;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  /** The ID written under (or to be tried next): the configured one unless another instance holds it. */
  get id(): string {
    return this.#candidates[this.#index]!;
  }

  /** Why the last write was refused (another instance holds every candidate), or null. */
  get refusal(): string | null {
    return this.#refusal;
  }

  /**
   * Writes through `put` under the current ID, or the next candidate another live instance does not
   * hold. `mine`: the store believes it holds the current key (tried first as `mine`). Rejects with
   * {@link IdRefusedError} when live instances hold every candidate, and with the store's error when
   * it fails.
   */
  async write(put: ConditionalPut, mine: boolean): Promise<void> {
    const passed: { id: string; heldBy: string }[] = [];
    for (let i = this.#index; i < this.#candidates.length; i++) {
      const id = this.#candidates[i]!;
      let expect: Expect = mine && i === this.#index ? { kind: 'mine' } : { kind: 'absent' };
      let heldBy: string | null = null;
      for (let attempt = 0; heldBy === null; attempt++) {
        if (attempt === MAX_ATTEMPTS)
          throw new Error(`the ${this.#type} key of ${id} kept changing; retrying`);
        const out = await put(id, expect);
        if (out.written) {
          this.#took(i, passed);
          return;
        }
        const held = out.held;
        if (held === null) expect = { kind: 'absent' };
        else if (held.mine) expect = { kind: 'mine' };
        else if (namesSelf(held.value, this.#spec)) expect = { kind: 'seen', version: held.version };
        else {
          const holder = recordHolder(held.value);
          heldBy = holder === null ? 'a value that is no valid record' : describeInstance(holder);
        }
      }
      passed.push({ id, heldBy });
    }
    this.#refused(passed);
    throw new IdRefusedError(this.#refusal!);
  }

  /** Took candidate `i` after passing `passed`: logged and counted once when it is a distinct ID. */
  #took(i: number, passed: { id: string; heldBy: string }[]): void {
    this.#index = i;
    this.#refusal = null;
    const first = passed[0];
    if (first === undefined) return;
    const said = `renamed ${first.id}@${first.heldBy} to ${this.id}`;
    if (this.#collision === said) return;
    this.#collision = said;
    this.#metrics.idCollisions?.labels('renamed').inc();
    this.#logger.error({
      msg: `another instance holds this service ID in ${this.#type}; registering under a distinct ID instead of replacing it. Set registry.serviceId to give each instance its own ID`,
      heldId: first.id,
      heldBy: first.heldBy,
      serviceId: this.id,
      instance: describeInstance(this.#spec),
    });
  }

  #refused(passed: { id: string; heldBy: string }[]): void {
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
