// Registers this instance in a key-value registry (etcd, redis) and keeps its record following meshlet's probe of the local app.
import type { Logger } from '../../telemetry/logger.ts';
import {
  type AppProber,
  type CheckStatus,
  createProber,
  ProbeStatus,
  type ProbeTarget,
} from '../consul/app-probe.ts';
import { buildRecord, type InstanceRecord, type InstanceSpec } from './instance-record.ts';
import type { RegistryMetrics } from './registry-metrics.ts';

/** What a backend does with the record: keep it stored (lease / TTL), replace it, remove it. */
export interface RecordStore {
  /** Writes (or replaces) the record and keeps it alive from now on; rejects when the backend failed. */
  write(record: InstanceRecord): Promise<void>;
  /** Removes the record and stops keeping it alive. Bounded by the caller. */
  remove(): Promise<void>;
}

/** Longest wait for the backend during shutdown (mark critical, deregister), ms. */
const SHUTDOWN_CALL_MS = 2000;

const DRAINED_OUTPUT = 'meshlet is drained by the admin API (POST /drain): still serving, taking no new work';

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Probe settings from `registry.check`. */
export interface ProbeSettings {
  probe: ProbeTarget;
  intervalMs: number;
  successThreshold: number;
  failureThreshold: number;
}

/**
 * The instance's registration. Every `intervalMs` it probes the local app (the same probe, status
 * thresholds and outputs as the Consul registry) and writes the record when the reported status
 * changed, or when the last write failed. Keeping the record alive (lease keep-alive, TTL
 * heartbeat) and restoring it after a backend loss is the store's job.
 */
export class InstanceRegistration {
  readonly spec: InstanceSpec;
  readonly #settings: ProbeSettings;
  readonly #store: RecordStore;
  readonly #metrics: RegistryMetrics;
  readonly #logger: Logger;
  readonly #status: ProbeStatus;
  readonly #prober: AppProber;
  #written: string | null = null;
  #drained = false;
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;
  #tick: Promise<void> = Promise.resolve();
  #record: InstanceRecord | null = null;

  constructor(
    spec: InstanceSpec,
    settings: ProbeSettings,
    deps: { store: RecordStore; metrics: RegistryMetrics; logger: Logger },
  ) {
    this.spec = spec;
    this.#settings = settings;
    this.#store = deps.store;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
    this.#status = new ProbeStatus(settings.successThreshold, settings.failureThreshold);
    this.#prober = createProber(settings.probe);
  }

  /** The status last reported (undefined before the first probe) and the probe's output. */
  get check(): { status: CheckStatus | undefined; output: string } {
    return { status: this.#status.status, output: this.#status.output };
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
    this.#schedule(0);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const startedAt = performance.now();
      this.#tick = this.#probeAndWrite().finally(() =>
        this.#schedule(Math.max(0, this.#settings.intervalMs - (performance.now() - startedAt))),
      );
    }, delayMs);
  }

  async #probeAndWrite(): Promise<void> {
    const result = await this.#prober.probe();
    if (this.#stopped) return;
    const before = this.#status.status;
    const status = this.#status.record(result);
    this.#metrics.setAppStatus(status);
    if (before !== status) {
      const level = status === 'passing' ? 'info' : 'warn';
      this.#logger[level]({ msg: 'local app check', status, output: this.#status.output });
    }
    await this.#write();
  }

  /** Writes the record when what peers act on (status, weight) differs from what was written. */
  async #write(force = false): Promise<void> {
    const status = this.#drained ? 'critical' : this.#status.status;
    if (status === undefined) return;
    const record = buildRecord(this.spec, status, this.#drained ? DRAINED_OUTPUT : this.#status.output);
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
        serviceId: this.spec.id,
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
    return this.#stopped ? Promise.resolve() : this.#write(true);
  }

  /** `POST|DELETE /drain`: critical while drained, the probe's status after. Bounded to 2 s. */
  async setDraining(drained: boolean): Promise<void> {
    this.#drained = drained;
    await this.#tick;
    if (this.#stopped) return;
    await withTimeout(this.#write(), SHUTDOWN_CALL_MS);
  }

  async #halt(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#tick;
    this.#prober.close();
  }

  /** Shutdown, step 1: stop probing and write the record critical, so peers stop sending. Bounded to 2 s. */
  async markDraining(): Promise<void> {
    await this.#halt();
    if (this.#written === null) return;
    const record = buildRecord(this.spec, 'critical', 'meshlet is shutting down: draining');
    this.#record = record;
    await withTimeout(
      this.#store.write(record).catch(() => undefined),
      SHUTDOWN_CALL_MS,
    );
  }

  /** Shutdown, last step: remove the record. Bounded to 2 s. */
  async deregister(): Promise<void> {
    await this.#halt();
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
