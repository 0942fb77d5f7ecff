// Registers this instance in a key-value registry (etcd, redis) and keeps its record following meshlet's probe of the local app.
import type { Logger } from '../../telemetry/logger.ts';
import {
  AppCheckLoop,
  type CheckSettings,
  DRAINED_OUTPUT,
  SHUTDOWN_CALL_MS,
  withTimeout,
} from '../app-check-loop.ts';
import type { CheckStatus } from '../consul/app-probe.ts';
import { buildRecord, type InstanceRecord, type InstanceSpec } from './instance-record.ts';
import type { RegistryMetrics } from './registry-metrics.ts';

/** What a backend does with the record: keep it stored (lease / TTL), replace it, remove it. */
export interface RecordStore {
  /** The service ID the record is stored under (the configured one unless another instance holds it). */
  readonly id: string;
  /** The key the record is stored under. */
  readonly key: string;
  /** Why the store last refused to write (another live instance holds the key), or null. */
  readonly refusal: string | null;
  /**
   * Writes (or replaces) the record under {@link id} (its `id` field set to it) and keeps it alive
   * from now on; never over another live instance's record. Rejects when the backend failed or
   * refused (an `IdRefusedError`).
   */
  write(record: InstanceRecord): Promise<void>;
  /**
   * Every check interval while the record is stored: while it is written under an interim ID
   * (another address's key held the default one before the first write), looks whether that key
   * expired and moves the record to the default ID (written there first, then the interim key
   * deleted); deletes an interim key a move left. Never rejects.
   */
  followUp(): Promise<void>;
  /** Deletes an interim key a move to the default ID left (shutdown, before the drain). Never rejects. */
  dropStale(): Promise<void>;
  /** Removes the record (every key this run holds) and stops keeping it alive. Bounded by the caller. */
  remove(): Promise<void>;
}

/** Probe settings from `registry.check`. */
export type ProbeSettings = CheckSettings;

/**
 * The instance's registration. Every `intervalMs` it probes the local app (the same probe, status
 * thresholds and outputs as the Consul registry) and writes the record when the reported status
 * changed, or when the last write failed, then lets the store follow up on its service ID (a move
 * from an interim ID to the default one). Keeping the record alive (lease keep-alive, TTL
 * heartbeat) and restoring it after a backend loss is the store's job.
 */
export class InstanceRegistration {
  readonly spec: InstanceSpec;
  readonly #store: RecordStore;
  readonly #logger: Logger;
  readonly #check: AppCheckLoop;
  #written: string | null = null;
  #drained = false;
  #record: InstanceRecord | null = null;

  constructor(
    spec: InstanceSpec,
    settings: ProbeSettings,
    deps: { store: RecordStore; metrics: RegistryMetrics; logger: Logger },
  ) {
    this.spec = spec;
    this.#store = deps.store;
    this.#logger = deps.logger;
    this.#check = new AppCheckLoop(settings, deps, () => this.#tick());
  }

  /** The status last reported (undefined before the first probe) and the probe's output. */
  get check(): { status: CheckStatus | undefined; output: string } {
    return { status: this.#check.status, output: this.#check.output };
  }

  /** The service ID registered under: the configured one, or a distinct one when another instance holds it. */
  get id(): string {
    return this.#store.id;
  }

  /** The key the record is stored under. */
  get key(): string {
    return this.#store.key;
  }

  /** Why the store last refused to register this instance (another live instance holds its key), or null. */
  get refusal(): string | null {
    return this.#store.refusal;
  }

  /** The record as last built (null before the first probe). */
  get record(): InstanceRecord | null {
    return this.#record;
  }

  /** Whether the current record is stored, as far as meshlet knows. */
  get registered(): boolean {
    return this.#written !== null;
  }

  /** Starts probing and registering; returns at once. */
  start(): void {
    this.#check.start();
  }

  /** One check interval: the record written when it changed, then the store's follow-up on the service ID. */
  async #tick(): Promise<void> {
    await this.#write();
    if (this.#written !== null) await this.#store.followUp();
  }

  /** Writes the record when what peers act on (status, weight) differs from what was written. */
  async #write(force = false): Promise<void> {
    const status = this.#drained ? 'critical' : this.#check.status;
    if (status === undefined) return;
    const record = buildRecord(this.spec, status, this.#drained ? DRAINED_OUTPUT : this.#check.output);
    this.#record = record;
    const key = `${record.status}/${record.weight}`;
    if (!force && this.#written === key) return;
    try {
      await this.#store.write(record);
    } catch {
      this.#written = null;
      return;
    }
    if (this.#written === null) {
      this.#logger.info({
        msg: 'registered this instance',
        serviceId: this.#store.id,
        service: this.spec.service,
        address: this.spec.address,
        port: this.spec.port,
        status: record.status,
      });
    }
    this.#written = key;
  }

  /** The store lost the record (lease expired, key gone): write it again at once. */
  restore(): Promise<void> {
    this.#written = null;
    return this.#check.stopped ? Promise.resolve() : this.#write(true);
  }

  /** `POST|DELETE /drain`: critical while drained, the probe's status after. Bounded to 2 s. */
  async setDraining(drained: boolean): Promise<void> {
    this.#drained = drained;
    await this.#check.settled();
    if (this.#check.stopped) return;
    await withTimeout(this.#write(), SHUTDOWN_CALL_MS);
  }

  /**
   * Shutdown, step 1: stop probing and write the record critical, so peers stop sending; an interim
   * key still held (shutdown during a move to the default ID) is deleted at once. Bounded to 2 s a call.
   */
  async markDraining(): Promise<void> {
    await this.#check.stop();
    await withTimeout(this.#store.dropStale(), SHUTDOWN_CALL_MS);
    if (this.#written === null) return;
    const record = buildRecord(this.spec, 'critical', 'meshlet is shutting down: draining');
    this.#record = record;
    await withTimeout(
      this.#store.write(record).catch(() => undefined),
      SHUTDOWN_CALL_MS,
    );
  }

  /** Shutdown, last step: remove the record (and an interim key still held). Bounded to 2 s. */
  async deregister(): Promise<void> {
    await this.#check.stop();
    this.#written = null;
    await withTimeout(
      this.#store.remove().catch(() => undefined),
      SHUTDOWN_CALL_MS,
    );
  }
}

/** `registry.check` and `service` as probe settings (the same probe as Consul's). */
export function probeSettings(
  service: { port: number },
  check: {
    http?: string | undefined;
    grpc?: string | undefined;
    interval: number;
    timeout: number;
    successThreshold: number;
    failureThreshold: number;
  },
): ProbeSettings {
  return {
    probe: {
      port: service.port,
      httpPath: check.http,
      grpcService: check.grpc,
      timeoutMs: check.timeout,
      intervalMs: check.interval,
    },
    intervalMs: check.interval,
    successThreshold: check.successThreshold,
    failureThreshold: check.failureThreshold,
  };
}
