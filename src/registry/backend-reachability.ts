// Whether a registry backend (the Consul agent, etcd, redis, a DNS server) answers: fed by every call, published as `_up`, logged on each change.
import type { Counter, Gauge } from 'prom-client';
import type { Logger } from '../telemetry/logger.ts';

/**
 * Reachability as the last call saw it; unknown (false) until the first answer. The `_up` gauge
 * follows it; errors are counted by operation; a change is logged once.
 */
export class BackendReachability<Operation extends string = string> {
  readonly #what: string;
  readonly #check: string;
  readonly #metrics: { readonly up: Gauge; readonly errors: Counter<'operation'> };
  readonly #logger: Logger;
  #reachable = false;
  #answered = false;
  #since = Date.now();
  #lastError: string | null = null;

  /**
   * @param what The backend as logs name it: `Consul agent`, `etcd`, `redis`, `DNS`.
   * @param metrics its `_up` gauge and `_errors_total{operation}` counter.
   * @param check the `/ready` condition's name. Default `what` in lowercase.
   */
  constructor(
    what: string,
    metrics: { readonly up: Gauge; readonly errors: Counter<'operation'> },
    logger: Logger,
    check = what.toLowerCase(),
  ) {
    this.#what = what;
    this.#check = check;
    this.#metrics = metrics;
    this.#logger = logger;
  }

  get reachable(): boolean {
    return this.#reachable;
  }

  /** Whether the backend ever answered. */
  get answered(): boolean {
    return this.#answered;
  }

  /** Since when (epoch ms) the current state holds. */
  get since(): number {
    return this.#since;
  }

  get lastError(): string | null {
    return this.#lastError;
  }

  /** Records an answer. */
  ok(): void {
    if (!this.#reachable) {
      if (this.#answered) {
        this.#logger.info({ msg: `${this.#what} reachable again`, downForMs: Date.now() - this.#since });
      }
      this.#reachable = true;
      this.#since = Date.now();
      this.#lastError = null;
      this.#metrics.up.set(1);
    }
    this.#answered = true;
  }

  /** Records a failed call. */
  failed(operation: Operation, err: Error): void {
    this.#metrics.errors.labels(operation).inc();
    const first = !this.#answered && this.#lastError === null;
    this.#lastError = `${operation}: ${err.message}`;
    if (first) {
      this.#logger.warn({ msg: `${this.#what} not reachable yet; retrying`, operation, reason: err.message });
    }
    if (this.#reachable) {
      this.#reachable = false;
      this.#since = Date.now();
      this.#metrics.up.set(0);
      this.#logger.warn({
        msg: `${this.#what} unreachable; routing on the last known endpoints`,
        operation,
        reason: err.message,
      });
    }
  }

  /** The `/ready` condition: passes while reachable, and during an outage after a first answer. */
  readiness(): [string, boolean, string] {
    const detail = this.#reachable
      ? 'reachable'
      : this.#answered
        ? `unreachable for ${Math.round((Date.now() - this.#since) / 1000)} s: routing on the last known endpoints (${this.#lastError ?? 'no answer'})`
        : `not reached yet (${this.#lastError ?? 'waiting for the first answer'})`;
    return [this.#check, this.#reachable || this.#answered, detail];
  }
}
