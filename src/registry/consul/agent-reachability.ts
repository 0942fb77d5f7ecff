// Whether the Consul agent answers: fed by every call, published as a metric, logged on each change.
import type { Logger } from '../../telemetry/logger.ts';
import type { ConsulMetrics, ConsulOperation } from './consul-metrics.ts';

/**
 * Reachability of the agent as the last call saw it. Unknown (false) until the first answer.
 * `meshlet_registry_consul_up` follows it; errors are counted by operation.
 */
export class AgentReachability {
  readonly #metrics: ConsulMetrics;
  readonly #logger: Logger;
  #reachable = false;
  #answered = false;
  /** `Date.now()` of the first failure of the current outage (or of start), ms. */
  #since = Date.now();
  #lastError: string | null = null;

  constructor(metrics: ConsulMetrics, logger: Logger) {
    this.#metrics = metrics;
    this.#logger = logger;
  }

  get reachable(): boolean {
    return this.#reachable;
  }

  /** Whether the agent ever answered. */
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
        this.#logger.info({ msg: 'Consul agent reachable again', downForMs: Date.now() - this.#since });
      }
      this.#reachable = true;
      this.#since = Date.now();
      this.#lastError = null;
      this.#metrics.up.set(1);
    }
    this.#answered = true;
  }

  /** Records a failed call. */
  failed(operation: ConsulOperation, err: Error): void {
    this.#metrics.errors.labels(operation).inc();
    const first = !this.#answered && this.#lastError === null;
    this.#lastError = `${operation}: ${err.message}`;
    if (first) {
      this.#logger.warn({
        msg: 'Consul agent not reachable yet; retrying with backoff',
        operation,
        reason: err.message,
      });
    }
    if (this.#reachable) {
      this.#reachable = false;
      this.#since = Date.now();
      this.#metrics.up.set(0);
      this.#logger.warn({
        msg: 'Consul agent unreachable; routing on the last known endpoints',
        operation,
        reason: err.message,
      });
    }
  }
}
