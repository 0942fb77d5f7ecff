// Keeps this instance's key in etcd: a lease with keep-alive, the record put under it by transaction (never over another instance's), a new lease whenever the old one is lost.
import type { Etcd3, IKeyValue, Lease } from 'etcd3';
import type { Logger } from '../../telemetry/logger.ts';
import type { BackendReachability } from '../backend-reachability.ts';
import {
  type ConditionalDelete,
  type ConditionalPut,
  type Expect,
  IdRefusedError,
  type InstanceIdClaim,
} from '../kv/instance-id-claim.ts';
import type { InstanceRecord } from '../kv/instance-record.ts';
import type { RecordStore } from '../kv/instance-registration.ts';
import type { RegistryMetrics } from '../kv/registry-metrics.ts';

/** How often etcd looks for expired leases (and deletes their keys), ms: a key outlives its lease by up to this. */
export const LEASE_REVOKE_MS = 500;

/**
 * The longest a crashed instance's key outlives its last keep-alive, ms: the lease TTL in whole
 * seconds (as granted) and etcd's lease check. `leaseTtlMs`: `registry.etcd.leaseTtl`, ms.
 */
export function leaseExpiryMs(leaseTtlMs: number): number {
  return Math.ceil(leaseTtlMs / 1000) * 1000 + LEASE_REVOKE_MS;
}

/**
 * The key `<prefix><service>/<id>` holds the record under a lease of `leaseTtlMs` (whole seconds,
 * rounded up) kept alive every TTL/3. A meshlet that dies stops the keep-alives and etcd deletes the
 * key when the lease expires. A lost lease (expired while etcd was unreachable, or unknown to a
 * restored cluster) is replaced by a new one and the record put again, retried with backoff until
 * etcd answers. Every put is one transaction that compares the key first (absent, under this
 * lease, or the revision a read saw naming this instance's address and port), so a key another
 * live instance holds is never written over (see {@link InstanceIdClaim}). While the record is
 * under an interim ID (a key at another address held the default one), the default key is tried
 * every check interval by the same transaction, and the interim key deleted (only while under this
 * lease) once the record is there. The stop revokes the lease, which deletes only keys under it:
 * the current one, and the interim one if the stop came in the middle of a move.
 */
export class EtcdRecordStore implements RecordStore {
  readonly #keyOf: (id: string) => string;
  readonly #claim: InstanceIdClaim;
  readonly #client: Etcd3;
  readonly #ttlSeconds: number;
  readonly #reach: BackendReachability;
  readonly #metrics: RegistryMetrics;
  readonly #logger: Logger;
  #lease: Lease | null = null;
  #record: InstanceRecord | null = null;
  #retry: NodeJS.Timeout | null = null;
  #failures = 0;
  #removed = false;
  #writing: Promise<void> = Promise.resolve();
  /** The current key was last put under the current lease. */
  #held = false;

  /**
   * @param keyOf The key of a service ID (`<prefix><service>/<id>`).
   * @param claim Picks the service ID (the configured one unless another live instance holds it).
   * @param leaseTtlMs The lease TTL, ms (rounded up to whole seconds).
   */
  constructor(
    keyOf: (id: string) => string,
    claim: InstanceIdClaim,
    leaseTtlMs: number,
    deps: { client: Etcd3; reach: BackendReachability; metrics: RegistryMetrics; logger: Logger },
  ) {
    this.#keyOf = keyOf;
    this.#claim = claim;
    this.#ttlSeconds = Math.ceil(leaseTtlMs / 1000);
    this.#client = deps.client;
    this.#reach = deps.reach;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  /** The service ID written under. */
  get id(): string {
    return this.#claim.id;
  }

  /** `<prefix><service>/<id>` of {@link id}. */
  get key(): string {
    return this.#keyOf(this.#claim.id);
  }

  get refusal(): string | null {
    return this.#claim.refusal;
  }

  /** The current lease id (decimal), or null. */
  async leaseId(): Promise<string | null> {
    return this.#lease === null ? null : this.#lease.grant();
  }

  write(record: InstanceRecord): Promise<void> {
    this.#record = record;
    this.#removed = false;
    // Writes go one at a time, so the last record asked for is the one stored.
    const next = this.#writing.then(() => this.#put());
    this.#writing = next.catch(() => undefined);
    return next;
  }

  async #put(): Promise<void> {
    const record = this.#record;
    if (record === null || this.#removed) return;
    try {
      let lease = this.#lease;
      const fresh = lease === null;
      if (lease === null) {
        lease = this.#client.lease(this.#ttlSeconds, { autoKeepAlive: true });
        lease.on('lost', (err) => this.#lost(lease!, err));
        lease.on('keepaliveSucceeded', () => this.#reach.ok());
        this.#lease = lease;
      }
      const leaseId = await lease.grant();
      const held = this.#held && !fresh;
      await this.#claim.write(this.#conditionalPut(record, leaseId), held);
      this.#held = true;
      this.#reach.ok();
      this.#failures = 0;
      if (!held) this.#metrics.registrations.inc();
    } catch (err) {
      this.#held = false;
      if (err instanceof IdRefusedError) {
        // etcd answered: another instance holds the key. The registration's next check retries.
        this.#reach.ok();
        throw err;
      }
      this.#reach.failed('register', err as Error);
      this.#dropLease();
      this.#scheduleRetry();
      throw err;
    }
  }

  followUp(): Promise<void> {
    return this.#serial(async () => {
      const record = this.#record;
      const lease = this.#lease;
      if (record === null || lease === null || this.#removed || !this.#held) return;
      const leaseId = await lease.grant();
      const moved = await this.#claim.followUp(
        this.#conditionalPut(record, leaseId),
        this.#conditionalDelete(leaseId),
      );
      if (moved) this.#metrics.registrations.inc();
    });
  }

  dropStale(): Promise<void> {
    return this.#serial(async () => {
      const lease = this.#lease;
      // Without a lease, keys under the lost one expire with it.
      if (lease !== null) await this.#claim.dropStale(this.#conditionalDelete(await lease.grant()));
    });
  }

  /** Runs `step` after the writes queued before it (never rejects). */
  #serial(step: () => Promise<void>): Promise<void> {
    const next = this.#writing.then(step).catch(() => undefined);
    this.#writing = next;
    return next;
  }

  /** One transaction: deletes the key of `id` while it is under `leaseId` (this meshlet's). */
  #conditionalDelete(leaseId: string): ConditionalDelete {
    return async (id: string) => {
      const key = this.#keyOf(id);
      const res = await this.#client
        .if(key, 'Lease', '==', leaseId)
        .then(this.#client.delete().key(key))
        .commit();
      return res.succeeded;
    };
  }

  /** One transaction: put `record` under `id` with the lease when the key holds what `expect` says, else read it (with the answer's raft term). */
  #conditionalPut(record: InstanceRecord, leaseId: string): ConditionalPut {
    return async (id: string, expect: Expect) => {
      const key = this.#keyOf(id);
      const client = this.#client;
      const compare =
        expect.kind === 'absent'
          ? client.if(key, 'Version', '==', 0)
          : expect.kind === 'mine'
            ? client.if(key, 'Lease', '==', leaseId)
            : client.if(key, 'Mod', '==', expect.version);
      const res = await compare
        .then(
          client
            .put(key)
            .value(JSON.stringify({ ...record, id }))
            .lease(leaseId),
        )
        .else(client.get(key))
        .commit();
      // The raft term: a new leader (a restart, a switch) renewed every lease, a crashed run's too.
      const term = res.header.raft_term;
      if (res.succeeded) return { written: true, term };
      const kv: IKeyValue | undefined = res.responses[0]?.response_range.kvs[0];
      if (kv === undefined) return { written: false, held: null, term };
      return {
        written: false,
        held: { value: kv.value.toString(), version: kv.mod_revision, mine: kv.lease === leaseId },
        term,
      };
    };
  }

  #lost(lease: Lease, err: Error): void {
    if (lease !== this.#lease || this.#removed) return;
    this.#logger.warn({
      msg: 'etcd lease lost; registering again with a new lease',
      registryKey: this.key,
      reason: err.message,
    });
    this.#dropLease();
    this.write(this.#record!).catch(() => undefined);
  }

  #dropLease(): void {
    const lease = this.#lease;
    this.#lease = null;
    if (lease === null) return;
    lease.removeAllListeners();
    lease.on('lost', () => undefined);
    // Stop keep-alives; an old lease still known to etcd expires on its own.
    lease.release();
  }

  #scheduleRetry(): void {
    if (this.#retry !== null || this.#removed) return;
    const delay = Math.min(2000, 100 * 2 ** Math.min(this.#failures++, 10));
    this.#retry = setTimeout(() => {
      this.#retry = null;
      if (this.#record !== null) this.write(this.#record).catch(() => undefined);
    }, delay);
  }

  /**
   * The key is gone although the lease should hold it (deleted by hand), or another instance's
   * record replaced it: put it again (a key another live instance holds is left to it, and this
   * instance moves to a distinct ID).
   */
  restore(): void {
    if (this.#record !== null && !this.#removed) this.write(this.#record).catch(() => undefined);
  }

  /**
   * Revokes the lease, which deletes the keys under it (this run's: never another instance's); when
   * the revoke fails, deletes each key of this run while it is under the lease.
   */
  async remove(): Promise<void> {
    this.#removed = true;
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#retry = null;
    await this.#writing;
    const lease = this.#lease;
    this.#lease = null;
    if (lease === null) return;
    lease.removeAllListeners();
    lease.on('lost', () => undefined);
    try {
      await lease.revoke();
    } catch (err) {
      this.#reach.failed('deregister', err as Error);
      try {
        const drop = this.#conditionalDelete(await lease.grant());
        for (const id of this.#claim.held) await drop(id);
      } catch {
        // etcd does not answer: the keys expire with the lease.
      }
    }
  }
}
