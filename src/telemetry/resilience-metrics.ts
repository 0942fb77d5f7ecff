// Metrics of every resilience decision (retries, budget, breaker, ejections, overflows, failovers).
import { Counter, Gauge, type Registry } from 'prom-client';

/** Declared once per registry; labels are the upstream and a small fixed set of reasons. */
export class ResilienceMetrics {
  readonly retries: Counter<'upstream' | 'reason'>;
  readonly retriesSkipped: Counter<'upstream' | 'why'>;
  readonly breakerState: Gauge<'upstream' | 'state'>;
  readonly breakerTransitions: Counter<'upstream' | 'to'>;
  readonly ejectionsActive: Gauge<'upstream'>;
  readonly ejections: Counter<'upstream' | 'kind'>;
  readonly overflows: Counter<'upstream' | 'limit'>;
  readonly failovers: Counter<'upstream' | 'fallback'>;
  readonly attempts: Counter<'upstream' | 'result'>;

  /** @param collectAttempts runs when `meshlet_upstream_attempts_total` is read (adds the request path's counts). */
  constructor(registry: Registry, collectAttempts?: () => void) {
    const registers = [registry];
    this.retries = new Counter({
      name: 'meshlet_retries_total',
      help: 'Retries sent, by the condition that caused them (connect-failure, gateway-error, 5xx, ...).',
      labelNames: ['upstream', 'reason'],
      registers,
    });
    this.retriesSkipped = new Counter({
      name: 'meshlet_retries_skipped_total',
      help: 'Failed attempts not retried although retryOn matched: not-idempotent, body-not-replayable, budget-exhausted, retry-limit, deadline, attempts-exhausted.',
      labelNames: ['upstream', 'why'],
      registers,
    });
    this.breakerState = new Gauge({
      name: 'meshlet_circuit_breaker_state',
      help: 'Circuit breaker state: 1 for the current state (closed, open, half_open), 0 for the others.',
      labelNames: ['upstream', 'state'],
      registers,
    });
    this.breakerTransitions = new Counter({
      name: 'meshlet_circuit_breaker_transitions_total',
      help: 'Circuit breaker transitions, by the state entered.',
      labelNames: ['upstream', 'to'],
      registers,
    });
    this.ejectionsActive = new Gauge({
      name: 'meshlet_outlier_ejections_active',
      help: 'Endpoints ejected by outlier detection right now.',
      labelNames: ['upstream'],
      registers,
    });
    this.ejections = new Counter({
      name: 'meshlet_outlier_ejections_total',
      help: 'Endpoint ejections by outlier detection, by failure kind (5xx, gateway, connect).',
      labelNames: ['upstream', 'kind'],
      registers,
    });
    this.overflows = new Counter({
      name: 'meshlet_overflows_total',
      help: 'Requests refused (503 overloaded) or retries skipped because a limit was full: request, pending, retry.',
      labelNames: ['upstream', 'limit'],
      registers,
    });
    this.failovers = new Counter({
      name: 'meshlet_failovers_total',
      help: 'Requests served by the fallback upstream because the primary had no usable endpoint or an open breaker.',
      labelNames: ['upstream', 'fallback'],
      registers,
    });
    this.attempts = new Counter({
      name: 'meshlet_upstream_attempts_total',
      help: 'Attempts sent to endpoints, by result: response, connect_failure, reset, timeout.',
      labelNames: ['upstream', 'result'],
      registers,
      ...(collectAttempts === undefined ? {} : { collect: collectAttempts }),
    });
  }
}
