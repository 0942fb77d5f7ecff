// An upstream: its endpoints, balancer, connection pools, and the resilience policies that guard it.
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import buildConnector from 'undici/lib/core/connect.js';
import { h2Client } from '../http2/h2-client.ts';
import { Pool } from './undici-pool.ts';
import { createBalancer } from '../balancer/create-balancer.ts';
import type { LoadBalancer } from '../balancer/load-balancer.ts';
import { ExponentialBackoff } from '../resilience/backoff.ts';
import { MeshletError } from '../errors/meshlet-error.ts';
import {
  ADMITTED,
  type Admission,
  type BreakerState,
  REFUSED,
  UpstreamBreaker,
} from '../resilience/circuit-breaker.ts';
import { ConcurrencyLimit } from '../resilience/concurrency-limit.ts';
import { OutlierDetector, type OutlierDetectorOptions } from '../resilience/outlier-detector.ts';
import { RetryBudget } from '../resilience/retry-budget.ts';
import { timerDelay } from '../resilience/timer-delay.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics, UpstreamMetrics } from '../telemetry/metrics.ts';
import type { RefusalLog } from '../tls/refusal-log.ts';
import { type Endpoint, EndpointHandle } from './endpoint.ts';
import {
  checkedConnector,
  type ConnectCheck,
  FORWARDING_LOOP_WARNING,
  ForwardingLoopError,
  type OwnListeners,
} from './forwarding-loop.ts';
import {
  idleProtocolErrorLog,
  type IdleProtocolErrorReason,
  watchIdleProtocolErrors,
} from './idle-protocol-error.ts';
import type { RequestPolicy, RetrySettings, UpstreamSettings } from './upstream-settings.ts';

/** An endpoint's connections: an undici Pool (HTTP/1.1) or Client (one HTTP/2 session). */
export type EndpointPool = Pick<Dispatcher, 'dispatch' | 'close'>;

/**
 * Creates the connection pool of one endpoint (plain HTTP here; the TLS layer supplies mTLS pools).
 * `upstream` is the upstream's name: the identity an mTLS server must prove. `check`, when given,
 * is run on each connection the pool opens, before any byte is written on it (the forwarding-loop
 * guard): a connection it refuses is destroyed and the attempt fails with its error.
 */
export type PoolFactory = (
  endpoint: Endpoint,
  settings: UpstreamSettings,
  upstream: string,
  check?: ConnectCheck,
) => EndpointPool;

/** Whether meshlet speaks HTTP/2 to an endpoint: its own advertised protocol, else the upstream's. */
export function speaksH2(endpoint: Endpoint, settings: UpstreamSettings): boolean {
  return (endpoint.protocol ?? settings.protocol) !== 'http1';
}

/**
 * Per-endpoint keep-alive pool: pipelining off, connect timeout from settings; h2c for HTTP/2 and
 * gRPC. With a `check`, the pool's connector (undici's own, built once per pool) runs it on each
 * new connection.
 */
export const plainPoolFactory: PoolFactory = (endpoint, settings, _upstream, check) => {
  const timeout = settings.connectTimeoutMs;
  if (speaksH2(endpoint, settings)) {
    if (check === undefined) return h2Client(`http://${endpoint.id}`, { connectTimeoutMs: timeout });
    // The connector h2Client builds itself for h2c (undici's types leave out `useH2c`, which it reads).
    const h2c = buildConnector({ allowH2: true, ...{ useH2c: true }, timeout });
    return h2Client(`http://${endpoint.id}`, {
      connectTimeoutMs: timeout,
      connect: checkedConnector(h2c, check),
    });
  }
  return new Pool(`http://${endpoint.id}`, {
    pipelining: 1,
    connect: check === undefined ? { timeout } : checkedConnector(buildConnector({ timeout }), check),
    keepAliveTimeout: 4000,
  });
};

const BREAKER_STATES: readonly BreakerState[] = ['closed', 'open', 'half_open'];

/**
 * A named destination service. Discovery hands it immutable endpoint snapshots (`setEndpoints`);
 * it keeps one handle per endpoint across snapshots, and one undici pool per endpoint from the
 * endpoint's first use (`poolOf`): an idle endpoint holds no pool. Outlier detection decides
 * which handles are eligible; the balancer picks among those on each attempt. It also owns the
 * upstream's breaker, resource limits, retry budget and backoff. An endpoint that breaks HTTP/1.1 on
 * an idle connection of its pool (bytes after a complete response) counts a gateway failure with
 * outlier detection, like a reset (idle-protocol-error.ts). An endpoint that is one of meshlet's own
 * listeners (forwarding-loop.ts) is never used: kept out of the handles, shown as `loopEndpoints`;
 * by its address when discovery delivers it, or, for a host name that resolves to this host, by the
 * peer a connection of its pool reached (closed before any byte is written), until discovery
 * delivers a different endpoint list.
 */
export class Upstream {
  readonly name: string;
  settings: UpstreamSettings;
  readonly metrics: UpstreamMetrics;
  readonly limits: ConcurrencyLimit;
  readonly outlier: OutlierDetector;
  breaker: UpstreamBreaker | null;
  #budgets = new WeakMap<RetrySettings, RetryBudget>();
  #backoffs = new WeakMap<RetrySettings, ExponentialBackoff>();
  #balancer: LoadBalancer;
  readonly #metricsRoot: Metrics;
  readonly #poolFactory: PoolFactory;
  #handles: readonly EndpointHandle[] = [];
  /** Ejected handles, counted when ejections change. */
  #ejected = 0;
  /**
   * The live handles (the keys: exactly `#handles`) and their pools; `null` until the endpoint's first
   * use, so an idle endpoint costs no pool (~18.5 KiB of heap each). A handle that left is no key:
   * it never gets a pool again.
   */
  readonly #pools = new Map<EndpointHandle, EndpointPool | null>();
  #tick: NodeJS.Timeout | null = null;
  #closed = false;
  /** True once discovery delivered a first snapshot (even an empty one). */
  synced = false;
  #syncWaiters: (() => void)[] | null = null;
  /** Told the eligible endpoints after each rebalance: filtered views (upstream-view.ts) follow discovery and ejections. */
  readonly #rebalanceListeners = new Set<(eligible: readonly EndpointHandle[]) => void>();
  /** Warns of endpoints that broke HTTP/1.1 on an idle connection; null without a logger. */
  readonly #idleProtocolLog: RefusalLog | null;
  /** The last snapshot as discovery delivered it, own listeners included (checked again when a listener is bound). */
  #snapshot: readonly Endpoint[] = [];
  /** Endpoints of the snapshot refused as meshlet's own listeners (a forwarding loop). */
  #loops: readonly Endpoint[] = [];
  /**
   * Endpoint ids whose connection reached one of meshlet's own listeners (a host name resolving to
   * this host), with the peer it reached: refused like {@link loopEndpoints} until discovery
   * delivers a different endpoint list.
   */
  readonly #connectLoops = new Map<string, string>();
  /** Whether the `state="loop"` endpoint gauge was ever set (it is published from the first refusal on). */
  #loopSeries = false;
  readonly #ownListeners: OwnListeners | null;
  readonly #stopOwnListeners: (() => void) | null;
  readonly #logger: Logger | undefined;

  /**
   * @param logger where an endpoint's protocol error on an idle connection, and an endpoint refused as
   *   meshlet's own listener, are logged (none: not logged).
   * @param ownListeners meshlet's own listeners: endpoints that reach one are refused (none: no check).
   */
  constructor(
    name: string,
    settings: UpstreamSettings,
    metrics: Metrics,
    poolFactory: PoolFactory = plainPoolFactory,
    logger?: Logger,
    ownListeners?: OwnListeners,
  ) {
    this.name = name;
    this.#logger = logger;
    this.#ownListeners = ownListeners ?? null;
    this.#stopOwnListeners =
      ownListeners?.onChange(() => {
        if (this.synced && !this.#closed) this.#apply(this.#snapshot);
      }) ?? null;
    this.#idleProtocolLog = logger === undefined ? null : idleProtocolErrorLog(logger);
    this.settings = settings;
    this.#metricsRoot = metrics;
    this.metrics = metrics.forUpstream('outbound', name);
    this.#poolFactory = poolFactory;
    this.#balancer = createBalancer(settings.loadBalancer);
    this.limits = new ConcurrencyLimit(settings.limits);
    this.outlier = this.#createOutlier(settings);
    this.breaker = this.#createBreaker(settings);
    this.#publishEndpointGauges();
  }

  /** The live endpoint handles, in snapshot order (without {@link loopEndpoints}). */
  get endpoints(): readonly EndpointHandle[] {
    return this.#handles;
  }

  /** Endpoints of the last snapshot refused as meshlet's own listeners: never balanced to, no pool. */
  get loopEndpoints(): readonly Endpoint[] {
    return this.#loops;
  }

  get balancerKind(): string {
    return this.#balancer.kind;
  }

  /**
   * Whether any endpoint is usable: one exists and not every one is ejected (in panic the balancer
   * still picks among ejected ones; a fallback is better then).
   */
  get usable(): boolean {
    return this.#handles.length > this.#ejected;
  }

  /**
   * Admits one request: takes a concurrency slot, asks the breaker, and counts the request for the
   * retry budget of `retry`. Returns the breaker's admission — settle it, and give the slot back
   * with `limits.releaseRequest()`, when the request ends — or the refusal to answer with,
   * `overloaded` (counted as an overflow) or `circuit_open`, holding nothing.
   */
  admit(retry: RetrySettings): Admission | MeshletError {
    if (!this.limits.tryAcquireRequest()) {
      this.#metricsRoot.resilience.overflows.labels(this.name, 'request').inc();
      return new MeshletError('overloaded', `upstream "${this.name}" is at its concurrency limit`, this.name);
    }
    let admission: Admission = ADMITTED;
    if (this.breaker !== null) {
      admission = this.breaker.admit();
      if (admission === REFUSED) {
        this.limits.releaseRequest();
        return new MeshletError('circuit_open', `upstream "${this.name}" circuit breaker is open`, this.name);
      }
    }
    this.budget(retry).onRequest();
    return admission;
  }

  /** The retry budget shared by requests using `retry` settings on this upstream. */
  budget(retry: RetrySettings): RetryBudget {
    let b = this.#budgets.get(retry);
    if (b === undefined) {
      b = new RetryBudget({
        ratio: retry.budgetRatio,
        minRetriesPerSecond: retry.budgetMinRetriesPerSecond,
        windowMs: retry.budgetWindowMs,
      });
      this.#budgets.set(retry, b);
    }
    return b;
  }

  /** The backoff of `retry` settings. */
  backoff(retry: RetrySettings): ExponentialBackoff {
    let b = this.#backoffs.get(retry);
    if (b === undefined) {
      b = new ExponentialBackoff({ baseMs: retry.backoffBaseMs, maxMs: retry.backoffMaxMs });
      this.#backoffs.set(retry, b);
    }
    return b;
  }

  /**
   * Swaps in a new endpoint snapshot. Handles (and their pools) of endpoints that stay (by id,
   * `address:port`) are kept, with their ejection and outlier counts, even when the snapshot changes
   * their weight, tags or meta (the handle takes the new fields; a new transport or protocol gets a
   * new pool on next use, the old one finishing its requests); a new endpoint gets its pool on
   * first use; pools of endpoints that left are closed gracefully (in-flight requests finish). An endpoint that is meshlet's own listener gets no handle; one
   * found so at connect stays refused while the snapshot lists the same endpoint ids, and is checked
   * afresh once a different list arrives.
   */
  setEndpoints(snapshot: readonly Endpoint[]): void {
    if (!sameIds(this.#snapshot, snapshot)) this.#connectLoops.clear();
    this.#apply(snapshot);
  }

  /** {@link setEndpoints} without forgetting the endpoints refused at connect (the same list again). */
  #apply(snapshot: readonly Endpoint[]): void {
    this.#snapshot = snapshot;
    const byId = new Map<string, EndpointHandle>();
    for (const h of this.#handles) byId.set(h.endpoint.id, h);
    const next: EndpointHandle[] = [];
    for (const endpoint of this.#refuseLoops(snapshot)) {
      const old = byId.get(endpoint.id);
      if (old !== undefined) {
        byId.delete(endpoint.id);
        if (!sameEndpoint(old.endpoint, endpoint)) this.#redescribe(old, endpoint);
        next.push(old);
        continue;
      }
      const handle = new EndpointHandle(endpoint);
      this.#pools.set(handle, null);
      next.push(handle);
    }
    for (const gone of byId.values()) this.#retire(gone);
    this.#handles = next;
    this.synced = true;
    this.outlier.update(next);
    this.#rebalance();
    const waiters = this.#syncWaiters;
    if (waiters !== null) {
      this.#syncWaiters = null;
      for (const w of waiters) w();
    }
  }

  /** Calls `cb` once discovery delivered the first snapshot (at once when it has). */
  onceSynced(cb: () => void): void {
    if (this.synced) cb();
    else (this.#syncWaiters ??= []).push(cb);
  }

  /**
   * Applies new settings (a config reload) to the running upstream; endpoints, pools and the
   * `limits`, `outlier` and `breaker` objects stay (requests in flight settle into them):
   * - `limits`: new maxima at once, slots held now kept;
   * - `outlierDetection`: new thresholds, times and percentages from now, ejections kept; turned
   *   off, every ejected endpoint returns;
   * - `circuitBreaker`: new thresholds in place, its state kept; turned on or off, a breaker is
   *   created or dropped;
   * - `retries`, `timeouts` (request, perTry, idle), `hashOn`, `fallback`: read per request, so
   *   new requests use them (an unchanged request policy keeps its retry budget);
   * - `timeouts.connect`: new pools (on next use) for new connections, old pools finish their requests;
   * - `loadBalancer`: a new balancer over the same eligible endpoints.
   */
  updateSettings(settings: UpstreamSettings): void {
    const old = this.settings;
    this.settings = samePolicy(old.policy, settings.policy)
      ? Object.freeze({ ...settings, policy: old.policy })
      : settings;
    if (old.loadBalancer !== settings.loadBalancer) this.#balancer = createBalancer(settings.loadBalancer);
    if (!sameJson(old.limits, settings.limits)) this.limits.configure(settings.limits);
    if (!sameJson(old.outlierDetection, settings.outlierDetection)) {
      this.outlier.configure(outlierOptions(settings));
      if (!settings.outlierDetection.enabled) this.outlier.returnAll();
    }
    if (!sameJson(old.circuitBreaker, settings.circuitBreaker)) {
      if (this.breaker !== null && settings.circuitBreaker.enabled) {
        this.breaker.configure(settings.circuitBreaker);
      } else {
        this.breaker?.shutdown();
        this.breaker = this.#createBreaker(settings);
      }
    }
    if (old.connectTimeoutMs !== settings.connectTimeoutMs || old.protocol !== settings.protocol) {
      for (const h of this.#handles) {
        const pool = this.#pools.get(h);
        if (pool === null || pool === undefined) continue;
        this.#pools.set(h, null);
        pool.close().catch(() => {});
      }
    }
    this.#rebalance();
  }

  /**
   * Calls `listener` with the eligible endpoints now and after every change (a discovery snapshot,
   * an ejection or its end, a balancer change; `[]` once closed). Returns a function that removes it.
   */
  onRebalance(listener: (eligible: readonly EndpointHandle[]) => void): () => void {
    this.#rebalanceListeners.add(listener);
    listener(this.#closed ? [] : this.outlier.eligible(this.#handles));
    return () => this.#rebalanceListeners.delete(listener);
  }

  /** Picks an endpoint for an attempt (see LoadBalancer.pick). */
  pick(hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined {
    return this.#balancer.pick(hashKey, avoid);
  }

  /** Tells the balancer an attempt's latency (ms). */
  observe(handle: EndpointHandle, latencyMs: number): void {
    this.#balancer.observe?.(handle, latencyMs);
  }

  /**
   * The connection pool of a handle this upstream gave out, created on the endpoint's first use with
   * the upstream's settings then. Undefined for a handle that left the upstream (or once it closed):
   * such a handle never gets a pool, as nothing would close it. Undefined too when the pool cannot
   * be created (an address undici refuses as an origin): the attempt then finds no usable endpoint.
   * An HTTP/1.1 pool is watched for protocol errors on idle connections (see the class).
   */
  poolOf(handle: EndpointHandle): EndpointPool | undefined {
    const pool = this.#pools.get(handle);
    if (pool !== null) return pool;
    const endpoint = handle.endpoint;
    let created: EndpointPool;
    try {
      created = this.#poolFactory(endpoint, this.settings, this.name, this.connectCheck(endpoint));
    } catch {
      return undefined;
    }
    this.#pools.set(handle, created);
    if (created instanceof Pool) {
      watchIdleProtocolErrors(created, (reason, err) => this.#onIdleProtocolError(handle, reason, err));
    }
    return created;
  }

  /**
   * The forwarding-loop check for a connection to `endpoint` (run once it is open, before any byte
   * is written): the one its pool runs, for the connections opened outside it (a tunnel's dial). A
   * connection it refuses sets the endpoint aside as a loop (see {@link loopEndpoints}); undefined
   * when meshlet's own listeners are not known (no guard).
   */
  connectCheck(endpoint: Endpoint): ConnectCheck | undefined {
    if (this.#ownListeners === null) return undefined;
    return (socket: Socket): Error | null => this.#checkConnection(endpoint, socket);
  }

  /** How many pools this upstream holds now: one per live endpoint used since it arrived (or since `timeouts.connect` or `protocol` changed). */
  get poolCount(): number {
    let n = 0;
    for (const pool of this.#pools.values()) if (pool !== null) n++;
    return n;
  }

  /** Closes every pool, waiting for in-flight requests, and stops timers. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopOwnListeners?.();
    if (this.#tick !== null) clearTimeout(this.#tick);
    this.breaker?.shutdown();
    const pools: EndpointPool[] = [];
    for (const pool of this.#pools.values()) if (pool !== null) pools.push(pool);
    this.#pools.clear();
    this.#handles = [];
    this.#balancer.update([]);
    for (const listener of this.#rebalanceListeners) listener([]);
    await Promise.all(pools.map((p) => p.close().catch(() => {})));
  }

  /**
   * An endpoint broke HTTP/1.1 on an idle connection (undici closed it): a gateway failure for
   * outlier detection, as Envoy counts an upstream protocol error against its host (an ejection it
   * causes is counted in `meshlet_outlier_ejections_total{kind="gateway"}`), and a warning at most
   * once per 10 s per endpoint. Nothing for an endpoint that left (or once the upstream closed).
   */
  #onIdleProtocolError(handle: EndpointHandle, reason: IdleProtocolErrorReason, err: Error): void {
    if (!this.#pools.has(handle)) return;
    const ejected = this.outlier.onFailure(handle, 'gateway');
    if (ejected) this.#metricsRoot.resilience.ejections.labels(this.name, 'gateway').inc();
    this.#idleProtocolLog?.record(handle.endpoint.id, {
      upstream: this.name,
      endpoint: handle.endpoint.id,
      reason,
      error: err.message,
      detail:
        'bytes after a complete response with no request on the connection: connection closed, counted as a gateway failure by outlier detection',
      ejected,
    });
  }

  /**
   * A connection to `endpoint` just opened: when its peer is one of meshlet's own listeners (a host
   * name that resolves to this host), the endpoint is set aside as a loop like a refusal at
   * discovery (warned of once, `loopEndpoints`, the `state="loop"` gauge), its pool closed, and the
   * attempt fails with a {@link ForwardingLoopError} before any byte was written: counted against no
   * endpoint, breaker or retry budget (the request path moves the request on).
   */
  #checkConnection(endpoint: Endpoint, socket: Socket): Error | null {
    if (!this.#ownListeners!.isOwnPeer(socket)) return null;
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const current = this.#snapshot.some((e) => e.id === endpoint.id);
    if (!this.#closed && current && !this.#connectLoops.has(endpoint.id)) {
      this.#connectLoops.set(endpoint.id, peer);
      this.#apply(this.#snapshot);
    }
    return new ForwardingLoopError(endpoint.id, peer);
  }

  /**
   * `snapshot` without the endpoints that are meshlet's own listeners; those become `loopEndpoints`,
   * each warned of once (when it becomes one). A request there would come back into meshlet: each hop
   * a new connection, retries multiplying it, until fd or concurrency limits (a forwarding loop).
   */
  #refuseLoops(snapshot: readonly Endpoint[]): readonly Endpoint[] {
    const guard = this.#ownListeners;
    if (guard === null) return snapshot;
    const found = this.#connectLoops;
    const loops = snapshot.filter((e) => found.has(e.id) || guard.isOwnListener(e));
    const before = this.#loops;
    this.#loops = loops;
    if (loops.length === 0) return snapshot;
    for (const e of loops) {
      if (before.some((b) => b.id === e.id)) continue;
      const peer = found.get(e.id);
      this.#logger?.warn({
        msg: FORWARDING_LOOP_WARNING,
        upstream: this.name,
        endpoint: e.id,
        detail:
          peer === undefined
            ? `port ${e.port} is a meshlet listener port and ${e.address} is this host: not used (check the registry entry of this upstream)`
            : `${e.address} resolved to ${peer}, a meshlet listener on this host: connection closed before anything was sent, not used until discovery delivers a different endpoint list (check the registry entry of this upstream)`,
      });
    }
    return snapshot.filter((e) => !loops.includes(e));
  }

  #createOutlier(settings: UpstreamSettings): OutlierDetector {
    return new OutlierDetector({ ...outlierOptions(settings), onChange: () => this.#rebalance() });
  }

  #createBreaker(settings: UpstreamSettings): UpstreamBreaker | null {
    const b = settings.circuitBreaker;
    const m = this.#metricsRoot.resilience;
    const publish = (state: BreakerState) => {
      for (const s of BREAKER_STATES) m.breakerState.labels(this.name, s).set(s === state ? 1 : 0);
    };
    publish('closed');
    if (!b.enabled) return null;
    return new UpstreamBreaker(b, (state) => {
      publish(state);
      m.breakerTransitions.labels(this.name, state).inc();
    });
  }

  /** Gives the balancer the eligible endpoints and schedules the next ejection's end. */
  #rebalance(): void {
    if (this.#closed) return;
    const eligible = this.outlier.eligible(this.#handles);
    this.#balancer.update(eligible);
    for (const listener of this.#rebalanceListeners) listener(eligible);
    this.#publishEndpointGauges();
    const next = this.outlier.nextTickAtMs();
    if (this.#tick !== null) {
      clearTimeout(this.#tick);
      this.#tick = null;
    }
    if (next !== undefined) {
      this.#tick = setTimeout(
        () => {
          this.#tick = null;
          if (this.outlier.tick() === 0) this.#rebalance();
        },
        // Held to 2^31 − 1 ms: a longer ejection (maxEjectionTime: 1000h) would fire after 1 ms,
        // find nothing due and re-arm, every millisecond until the endpoint returns.
        timerDelay(next - performance.now() + 1),
      );
      this.#tick.unref();
    }
  }

  /**
   * Discovery re-sent `handle`'s endpoint (same id) with other fields: the handle stays, with its
   * ejection, outlier counts and multiplier, in-flight count and latency estimate (the balancer is
   * rebuilt from the new weight by the caller's rebalance). Its pool stays too, unless the transport
   * (plain vs mTLS) or protocol changed: that pool speaks the old one, so it is closed gracefully
   * (in-flight requests finish) and a new one is made on next use.
   */
  #redescribe(handle: EndpointHandle, endpoint: Endpoint): void {
    const before = handle.endpoint;
    handle.endpoint = endpoint;
    if (before.transport === endpoint.transport && before.protocol === endpoint.protocol) return;
    const pool = this.#pools.get(handle);
    if (pool === null || pool === undefined) return;
    this.#pools.set(handle, null);
    pool.close().catch(() => {});
  }

  #retire(handle: EndpointHandle): void {
    const pool = this.#pools.get(handle);
    this.#pools.delete(handle);
    if (pool !== null && pool !== undefined) pool.close().catch(() => {});
  }

  #publishEndpointGauges(): void {
    let ejected = 0;
    for (const h of this.#handles) if (h.ejected) ejected++;
    this.#ejected = ejected;
    this.#metricsRoot.endpoints.labels(this.name, 'healthy').set(this.#handles.length - ejected);
    this.#metricsRoot.endpoints.labels(this.name, 'ejected').set(ejected);
    if (this.#loops.length > 0) this.#loopSeries = true;
    if (this.#loopSeries) this.#metricsRoot.endpoints.labels(this.name, 'loop').set(this.#loops.length);
    this.#metricsRoot.resilience.ejectionsActive.labels(this.name).set(ejected);
  }
}

/** The detector's options from config (`enabled: false` turns every check off). */
function outlierOptions(settings: UpstreamSettings): OutlierDetectorOptions {
  const o = settings.outlierDetection;
  const off = !o.enabled;
  return {
    consecutive5xx: off ? 0 : o.consecutive5xx,
    consecutiveGatewayFailure: off ? 0 : o.consecutiveGatewayFailure,
    consecutiveLocalOriginFailure: off ? 0 : o.consecutiveConnectFailure,
    baseEjectionTimeMs: o.baseEjectionTime,
    maxEjectionTimeMs: Math.max(o.maxEjectionTime, o.baseEjectionTime),
    maxEjectionPercent: o.maxEjectionPercent,
    panicThresholdPercent: o.panicThreshold,
  };
}

/** Whether two config sections (plain JSON from the schema) are equal. */
function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Whether two request policies are equal (retryOn compared by its conditions and status codes). */
function samePolicy(a: RequestPolicy, b: RequestPolicy): boolean {
  const x = a.retry;
  const y = b.retry;
  return (
    a.requestTimeoutMs === b.requestTimeoutMs &&
    a.perTryTimeoutMs === b.perTryTimeoutMs &&
    a.idleTimeoutMs === b.idleTimeoutMs &&
    x.attempts === y.attempts &&
    x.backoffBaseMs === y.backoffBaseMs &&
    x.backoffMaxMs === y.backoffMaxMs &&
    x.retryAfterMaxMs === y.retryAfterMaxMs &&
    x.bufferLimitBytes === y.bufferLimitBytes &&
    x.grpcResponseHoldMs === y.grpcResponseHoldMs &&
    x.budgetRatio === y.budgetRatio &&
    x.budgetMinRetriesPerSecond === y.budgetMinRetriesPerSecond &&
    x.budgetWindowMs === y.budgetWindowMs &&
    sameJson(x.retryOn.conditions, y.retryOn.conditions) &&
    sameJson([...x.retryOn.statusCodes].sort(), [...y.retryOn.statusCodes].sort())
  );
}

/** Whether two snapshots list the same endpoint ids (in any order). */
function sameIds(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false;
  const ids = new Set(a.map((e) => e.id));
  return b.every((e) => ids.has(e.id));
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  if (a.weight !== b.weight || a.transport !== b.transport || a.protocol !== b.protocol) return false;
  if (a.tags.length !== b.tags.length) return false;
  for (let i = 0; i < a.tags.length; i++) if (a.tags[i] !== b.tags[i]) return false;
  const ak = Object.keys(a.meta);
  if (ak.length !== Object.keys(b.meta).length) return false;
  for (const k of ak) if (a.meta[k] !== b.meta[k]) return false;
  return true;
}
