// Core metrics (prom-client), declared in one block, with children pre-bound per upstream.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { ResilienceMetrics } from './resilience-metrics.ts';

/** Which listener a request came through. */
export type Direction = 'outbound' | 'inbound';

/** Latency buckets in seconds: 1 ms to 30 s. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Status class label of an HTTP status: `2xx`…`5xx`. */
const STATUS_CLASSES = ['1xx', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/**
 * Every core metric, on its own registry (so several meshlets can live in one process in tests).
 * Label values are bounded: direction, upstream names known to config or discovery, status class,
 * error code; never paths or ids.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'meshlet_requests_total',
    help: 'Requests handled, by listener direction, upstream and response status class.',
    labelNames: ['direction', 'upstream', 'status_class'] as const,
    registers: [this.registry],
  });
  readonly requestDuration = new Histogram({
    name: 'meshlet_request_duration_seconds',
    help: 'Time from request received to response finished, in seconds.',
    labelNames: ['direction', 'upstream', 'status_class'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly activeRequests = new Gauge({
    name: 'meshlet_requests_active',
    help: 'Requests in flight, by listener direction and upstream.',
    labelNames: ['direction', 'upstream'] as const,
    registers: [this.registry],
  });
  readonly localReplies = new Counter({
    name: 'meshlet_local_replies_total',
    help: 'Responses meshlet answered itself instead of the upstream, by error code.',
    labelNames: ['direction', 'upstream', 'code'] as const,
    registers: [this.registry],
  });
  readonly connectErrors = new Counter({
    name: 'meshlet_upstream_connect_errors_total',
    help: 'Failed attempts to connect to an endpoint of an upstream (refused, timed out, TLS).',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly endpoints = new Gauge({
    name: 'meshlet_upstream_endpoints',
    help: 'Endpoints of an upstream by state: healthy (eligible for traffic) or ejected.',
    labelNames: ['upstream', 'state'] as const,
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'meshlet_config_reloads_total',
    help: 'Reloads of the config file (SIGHUP) or the static endpoints file, by source and result.',
    labelNames: ['source', 'result'] as const,
    registers: [this.registry],
  });

  /** Retries, breaker, ejections, overflows, failovers. */
  readonly resilience = new ResilienceMetrics(this.registry);

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false)
      collectDefaultMetrics({ register: this.registry, prefix: 'meshlet_' });
  }

  /** Pre-binds the children one upstream uses on the request path. */
  forUpstream(direction: Direction, upstream: string): UpstreamMetrics {
    return new UpstreamMetrics(this, direction, upstream);
  }
}

/** Children of the core metrics bound to one (direction, upstream): the request path does no label lookups. */
export class UpstreamMetrics {
  readonly #metrics: Metrics;
  readonly #direction: Direction;
  readonly upstream: string;
  readonly active: Gauge.Internal<string>;
  readonly connectErrors: Counter.Internal;
  /** `meshlet_upstream_attempts_total{result="response"}`, bound once (counted on every response). */
  readonly attemptResponses: Counter.Internal;
  readonly #requests: Counter.Internal[];
  readonly #durations: Histogram.Internal<string>[];

  constructor(metrics: Metrics, direction: Direction, upstream: string) {
    this.#metrics = metrics;
    this.#direction = direction;
    this.upstream = upstream;
    this.active = metrics.activeRequests.labels(direction, upstream);
    this.connectErrors = metrics.connectErrors.labels(upstream);
    this.attemptResponses = metrics.resilience.attempts.labels(upstream, 'response');
    this.#requests = STATUS_CLASSES.map((c) => metrics.requests.labels(direction, upstream, c));
    this.#durations = STATUS_CLASSES.map((c) => metrics.requestDuration.labels(direction, upstream, c));
  }

  /** Counts one finished request with its status and duration (seconds). */
  finished(status: number, seconds: number): void {
    const i = status >= 100 && status < 600 ? (status / 100) | 0 : 5;
    this.#requests[i]!.inc();
    this.#durations[i]!.observe(seconds);
  }

  /** Counts a reply meshlet gave itself. */
  localReply(code: string): void {
    this.#metrics.localReplies.labels(this.#direction, this.upstream, code).inc();
  }
}
