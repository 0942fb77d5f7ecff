// Core metrics (prom-client), declared in one block; the per-request ones are plain numbers per upstream, read at scrape.
import { Counter, Gauge, Registry } from 'prom-client';
import { type BucketCounts, BucketHistogram } from './bucket-histogram.ts';
import { registerProcessMetrics } from './process-metrics.ts';
import { ResilienceMetrics } from './resilience-metrics.ts';
import { dropSeriesWhere, dropUpstreamSeries } from './upstream-series.ts';

/** Which listener a request came through. */
export type Direction = 'outbound' | 'inbound';

/** Latency buckets in seconds: 1 ms to 30 s. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** gRPC status names by code (grpc/doc/statuscodes.md): the `grpc_code` label. */
const GRPC_CODES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** Status class label of an HTTP status: `2xx`…`5xx`. */
const STATUS_CLASSES = ['1xx', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/**
 * Every core metric, on its own registry (so several meshlets can live in one process in tests).
 * Label values are bounded: direction, upstream names known to config or discovery, status class,
 * error code; never paths or ids.
 *
 * What the request path touches on every request (requests, durations, requests in flight, attempts
 * answered) is counted in plain numbers on {@link UpstreamMetrics} and copied into the prom-client
 * families when `/metrics` is read: prom-client's bound children re-validate and re-hash their labels
 * on each call, which cost about 10% of meshlet's throughput.
 */
export class Metrics {
  readonly registry = new Registry();
  /** One per (direction, upstream), kept while the upstream exists ({@link releaseUpstream}). */
  readonly #bound = new Map<string, UpstreamMetrics>();
  /** Set by the first {@link releaseUpstream}: from then on each scrape sweeps removed upstreams' late series. */
  #sweepRemoved = false;

  /**
   * Declared first, so its `collect` runs before any other family of the registry is read: that is
   * where a scrape drops the series of removed upstreams ({@link releaseUpstream}).
   */
  readonly requests: Counter<'direction' | 'upstream' | 'status_class'> = new Counter({
    name: 'meshlet_requests_total',
    help: 'Requests handled, by listener direction, upstream and response status class.',
    labelNames: ['direction', 'upstream', 'status_class'] as const,
    registers: [this.registry],
    collect: () => {
      if (this.#sweepRemoved) this.#dropRemovedSeries();
      this.#collectRequests();
    },
  });
  readonly requestDuration = new BucketHistogram({
    name: 'meshlet_request_duration_seconds',
    help: 'Time from request received to response finished, in seconds.',
    labelNames: ['direction', 'upstream', 'status_class'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly activeRequests: Gauge<'direction' | 'upstream'> = new Gauge({
    name: 'meshlet_requests_active',
    help: 'Requests in flight, by listener direction and upstream.',
    labelNames: ['direction', 'upstream'] as const,
    registers: [this.registry],
    collect: () => this.#collectActive(),
  });
  readonly grpcRequests: Counter<'direction' | 'upstream' | 'grpc_code'> = new Counter({
    name: 'meshlet_grpc_requests_total',
    help: 'gRPC calls finished with a grpc-status (from the upstream or meshlet itself), by direction, upstream and code.',
    labelNames: ['direction', 'upstream', 'grpc_code'] as const,
    registers: [this.registry],
    collect: () => this.#collectGrpc(),
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
    help: "Endpoints of an upstream by state: healthy (eligible for traffic), ejected, or loop (meshlet's own listener: never used, a forwarding loop).",
    labelNames: ['upstream', 'state'] as const,
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'meshlet_config_reloads_total',
    help: 'Reloads of the config file (SIGHUP) or the static endpoints file, by source and result (ok, partial: some changed keys need a restart, failed).',
    labelNames: ['source', 'result'] as const,
    registers: [this.registry],
  });
  readonly configKeysNotApplied = new Counter({
    name: 'meshlet_config_keys_not_applied_total',
    help: 'Changed config keys a reload accepted but could not apply to the running daemon (they need a restart), by key.',
    labelNames: ['key'] as const,
    registers: [this.registry],
  });

  /**
   * Downstream HTTP/2 sessions a listener of this daemon closed for abuse, by listener (outbound,
   * upstream, inbound, gateway) and reason (`H2_ABUSE_REASONS`); counted by `h2AbuseReporter`.
   */
  readonly h2SessionsClosed = new Counter({
    name: 'meshlet_http2_sessions_closed_total',
    help: 'Downstream HTTP/2 sessions a listener closed for abuse, by listener (outbound, upstream, inbound, gateway) and reason (rapid_reset, flood, continuation_flood, invalid_frames, protocol_error).',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });

  /**
   * Connections open on the daemon's listeners, by listener (outbound, upstream: every per-upstream
   * listener together, inbound, gateway, admin), every protocol and tunnels included; kept by
   * `ConnectionGuard`.
   */
  readonly listenerConnections = new Gauge({
    name: 'meshlet_listener_connections',
    help: 'Connections open on a listener (outbound, upstream, inbound, gateway, admin): HTTP/1.1, HTTP/2 and tunnels.',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  /** Connections a listener closed at accept because `listeners.NAME.maxConnections` were open (`ConnectionGuard`). */
  readonly listenerConnectionsDropped = new Counter({
    name: 'meshlet_listener_connections_dropped_total',
    help: 'Connections a listener closed as it accepted them because its maxConnections were open, by listener.',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });

  /** The series a listener's `ConnectionGuard` keeps. */
  get connectionSeries(): { open: Gauge<'listener'>; dropped: Counter<'listener'> } {
    return { open: this.listenerConnections, dropped: this.listenerConnectionsDropped };
  }

  /** Retries, breaker, ejections, overflows, failovers. */
  readonly resilience = new ResilienceMetrics(this.registry, () => this.#collectAttempts());

  /**
   * @param options.processMetrics Export Node process series (`meshlet_process_*`, `meshlet_nodejs_*`). Default true.
   * @param options.gcDurations With them, the GC duration histogram (`metrics.gcDurations`). Default false.
   */
  constructor(options: { processMetrics?: boolean; gcDurations?: boolean } = {}) {
    if (options.processMetrics !== false) registerProcessMetrics(this.registry, options.gcDurations === true);
  }

  /** The request-path counters of one (direction, upstream): made once, shared by every later caller. */
  forUpstream(direction: Direction, upstream: string): UpstreamMetrics {
    const key = `${direction}\u0000${upstream}`;
    let m = this.#bound.get(key);
    if (m === undefined) {
      m = new UpstreamMetrics(this, direction, upstream);
      this.#bound.set(key, m);
    }
    return m;
  }

  /**
   * Forgets outbound upstream `upstream` (removed from the upstream table: an on-demand upstream gone
   * idle or out of the catalog): its request counters and every series labelled with its name leave
   * `/metrics`, as Envoy drops a removed cluster's stats, so names that come and go cannot pile up
   * series. Counting starts from 0 should the name come back (a counter reset, which `rate()` handles).
   * Work still under way through it (a tunnel open across the removal, a request in flight) counts
   * into series of the name when it ends; every later scrape drops those too, before they are read.
   */
  releaseUpstream(upstream: string): void {
    const key = `outbound\u0000${upstream}`;
    this.#bound.get(key)?.release();
    this.#bound.delete(key);
    dropUpstreamSeries(this.registry, upstream);
    this.#sweepRemoved = true;
  }

  /**
   * Drops every outbound series labelled with an upstream that is not in the table (a name released
   * and not back); `""` (no upstream) always stays. One pass over the labelled children, at scrape
   * time only, and only once an upstream was ever removed.
   */
  #dropRemovedSeries(): void {
    dropSeriesWhere(
      this.registry,
      (upstream) => upstream !== '' && !this.#bound.has(`outbound\u0000${upstream}`),
    );
  }

  /** Every (direction, upstream) counted so far: what scrape-time exporters (the Consul UI series) read. */
  upstreamMetrics(): IterableIterator<UpstreamMetrics> {
    return this.#bound.values();
  }

  #collectRequests(): void {
    this.requests.reset();
    for (const m of this.#bound.values()) {
      for (let i = 1; i < STATUS_CLASSES.length; i++) {
        const n = m.requests[i]!;
        if (n > 0)
          this.requests.inc(
            { direction: m.direction, upstream: m.upstream, status_class: STATUS_CLASSES[i] },
            n,
          );
      }
    }
  }

  #collectGrpc(): void {
    this.grpcRequests.reset();
    for (const m of this.#bound.values()) {
      const counts = m.grpcCodes;
      if (counts === null) continue;
      for (let code = 0; code < counts.length; code++) {
        const n = counts[code]!;
        if (n > 0)
          this.grpcRequests.inc(
            { direction: m.direction, upstream: m.upstream, grpc_code: GRPC_CODES[code]! },
            n,
          );
      }
    }
  }

  #collectActive(): void {
    this.activeRequests.reset();
    // Shown once the upstream has carried a request, even at 0.
    for (const m of this.#bound.values()) {
      if (m.active !== 0 || m.requests.some((n) => n > 0))
        this.activeRequests.set({ direction: m.direction, upstream: m.upstream }, m.active);
    }
  }

  #collectAttempts(): void {
    for (const m of this.#bound.values()) {
      const n = m.takeAttemptResponses();
      if (n > 0) this.resilience.attempts.inc({ upstream: m.upstream, result: 'response' }, n);
    }
  }
}

/**
 * The request-path counters of one (direction, upstream): plain numbers, no label lookups, read into
 * the prom-client families at scrape time. Get one from {@link Metrics.forUpstream}.
 */
export class UpstreamMetrics {
  readonly #metrics: Metrics;
  readonly direction: Direction;
  readonly upstream: string;
  /** Requests in flight (`meshlet_requests_active`); the request path adds and subtracts 1. */
  active = 0;
  /** `meshlet_upstream_connect_errors_total{upstream}`; counts nothing once released. */
  connectErrors: Counter.Internal;
  #released = false;
  /** Attempts answered by an endpoint (`meshlet_upstream_attempts_total{result="response"}`). */
  attemptResponses = 0;
  #attemptResponsesRead = 0;
  /** Finished requests by status class index (`status / 100`; 0 unused). */
  readonly requests = new Float64Array(STATUS_CLASSES.length);
  /** Finished gRPC calls by grpc-status (0–16; others count as UNKNOWN); null until the first. */
  grpcCodes: Float64Array | null = null;
  readonly #durations: BucketCounts[];

  constructor(metrics: Metrics, direction: Direction, upstream: string) {
    this.#metrics = metrics;
    this.direction = direction;
    this.upstream = upstream;
    this.connectErrors = metrics.connectErrors.labels(upstream);
    this.#durations = STATUS_CLASSES.map((c) =>
      metrics.requestDuration.child({ direction, upstream, status_class: c }),
    );
  }

  /** Durations by status class index, same indexes as {@link requests} (read at scrape time). */
  get durations(): readonly BucketCounts[] {
    return this.#durations;
  }

  /** Counts one finished request with its status and duration (seconds). */
  finished(status: number, seconds: number): void {
    const i = status >= 100 && status < 600 ? (status / 100) | 0 : 5;
    this.requests[i]! += 1;
    this.#durations[i]!.observe(seconds);
  }

  /** Counts one finished gRPC call by its grpc-status. */
  grpcFinished(code: number): void {
    const counts = (this.grpcCodes ??= new Float64Array(GRPC_CODES.length));
    counts[code >= 0 && code < GRPC_CODES.length ? code : 2]! += 1;
  }

  /** Attempts answered since the last call (the scrape adds them to the prom-client counter). */
  takeAttemptResponses(): number {
    const n = this.attemptResponses - this.#attemptResponsesRead;
    this.#attemptResponsesRead = this.attemptResponses;
    return n;
  }

  /** Counts a reply meshlet gave itself (not once released: a late request must not bring the series back). */
  localReply(code: string): void {
    if (!this.#released) this.#metrics.localReplies.labels(this.direction, this.upstream, code).inc();
  }

  /** The upstream was removed ({@link Metrics.releaseUpstream}): requests still in flight count nowhere. */
  release(): void {
    this.#released = true;
    this.connectErrors = { inc: () => {} };
  }
}
