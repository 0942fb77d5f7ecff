// Outlier detection: ejects an upstream's endpoints after consecutive failures, Envoy style, with a panic floor.
import { type Clock, systemClock } from '../clock.ts';
import type { EndpointHandle } from '../upstream/endpoint.ts';

/**
 * What an attempt's failure says about its endpoint:
 * - `5xx`: the endpoint answered with a 5xx other than a gateway error (500, 501, ...).
 * - `gateway`: it answered 502, 503 or 504, or the attempt timed out or was reset after connecting.
 * - `connect`: no connection could be made to it (refused, TLS failure, connect timeout).
 */
export type OutlierFailureKind = '5xx' | 'gateway' | 'connect';

/** Options of {@link OutlierDetector}. Counts of 0 turn that check off. */
export interface OutlierDetectorOptions {
  /** Time source. Defaults to {@link systemClock}. */
  clock?: Clock;
  /** Consecutive 5xx (any kind, gateway errors included) that eject. Defaults to 5 (Envoy). */
  consecutive5xx?: number;
  /** Consecutive gateway failures (502/503/504, timeout, reset) that eject. Defaults to 5 (Envoy). */
  consecutiveGatewayFailure?: number;
  /** Consecutive connect failures that eject. Defaults to 5 (Envoy's consecutive local origin failures). */
  consecutiveLocalOriginFailure?: number;
  /** Ejection time of a first ejection, ms; the n-th lasts n × this. Defaults to 30,000 (Envoy). */
  baseEjectionTimeMs?: number;
  /** Longest ejection, ms (at least `baseEjectionTimeMs`). Defaults to 300,000 (Envoy). */
  maxEjectionTimeMs?: number;
  /**
   * Most endpoints ejected at once, in percent of the upstream's endpoints: an ejection happens only
   * if `(ejected + 1) / endpoints ≤ maxEjectionPercent / 100`. Defaults to 50, the value DESIGN.md's
   * config shows (Envoy's default of 10 would never eject anything from an upstream of fewer than
   * 10 endpoints, the common size behind a sidecar); the only endpoint is never ejected.
   */
  maxEjectionPercent?: number;
  /**
   * Panic threshold, percent: when fewer than this share of endpoints is un-ejected, `eligible`
   * returns all of them (spreading load over everything beats crushing the few left). Defaults to
   * 50 (Envoy); 0 turns panic off.
   */
  panicThresholdPercent?: number;
  /**
   * Every this many ms an endpoint stays un-ejected, its ejection count (the multiplier of the next
   * ejection's time) drops by one, as Envoy does on each detection interval. Defaults to 10,000.
   */
  intervalMs?: number;
  /** Called after every ejection or return (synchronously), so the upstream can `balancer.update()`. */
  onChange?: () => void;
}

/** Per-endpoint counters and ejection state. */
class OutlierState {
  readonly handle: EndpointHandle;
  consecutive5xx = 0;
  consecutiveGateway = 0;
  consecutiveConnect = 0;
  /** Ejections so far, less one per `intervalMs` spent un-ejected; the next ejection lasts (this + 1) × base. */
  multiplier = 0;
  /** Clock reading (ms) at which an ejected endpoint returns. */
  ejectedUntilMs = 0;
  /** Clock reading (ms) since which the endpoint has been un-ejected. */
  healthySinceMs = 0;
  constructor(handle: EndpointHandle) {
    this.handle = handle;
  }
}

/**
 * Passive health checking for one upstream (Envoy's outlier detection, consecutive-failure modes).
 * The request path reports each attempt's end (`onSuccess`, `onFailure`); after enough consecutive
 * failures of one kind the endpoint is ejected (`handle.ejected = true`) for `baseEjectionTimeMs` ×
 * its ejection count (capped at `maxEjectionTimeMs`), unless that would eject more than
 * `maxEjectionPercent` of the endpoints. `tick()` returns endpoints whose time is up; the owner
 * calls it from a timer set to `nextTickAtMs()` or before using `eligible`. `eligible(all)` is what
 * the balancer should get: the un-ejected endpoints, or all of them in panic.
 *
 * Counting: `5xx` counts toward `consecutive5xx`; `gateway` toward both `consecutive5xx` and
 * `consecutiveGatewayFailure`; both prove the endpoint accepts connections, so they clear the
 * connect count. `connect` counts toward `consecutiveLocalOriginFailure` only (Envoy's "split
 * external and local origin errors" mode). `onSuccess` clears every count. Failures reported for an
 * endpoint already ejected (late in-flight requests) are ignored. Every call is O(1) but `update`
 * and `eligible`.
 */
export class OutlierDetector {
  readonly #clock: Clock;
  #consecutive5xx = 0;
  #consecutiveGateway = 0;
  #consecutiveConnect = 0;
  #baseMs = 0;
  #maxMs = 0;
  #maxEjectionPercent = 0;
  #panicThresholdPercent = 0;
  #intervalMs = 0;
  readonly #onChange: (() => void) | undefined;
  #states = new Map<EndpointHandle, OutlierState>();
  readonly #ejected = new Set<OutlierState>();
  #panic = false;

  /** Bumped on every ejection and return: the upstream re-reads `eligible` when it changes. */
  version = 0;
  /** Ejections since construction (a counter for metrics). */
  ejectionsTotal = 0;
  /** Ejections refused because `maxEjectionPercent` was reached. */
  ejectionsOverflowTotal = 0;
  /** Ejections since construction by the failure kind that caused them. */
  readonly ejectionsByKind: Record<OutlierFailureKind, number> = { '5xx': 0, gateway: 0, connect: 0 };

  /** @throws RangeError on negative or non-integer counts, non-positive times, or percentages outside 0–100. */
  constructor(options: OutlierDetectorOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#onChange = options.onChange;
    this.configure(options);
  }

  /**
   * Sets new thresholds, times and percentages (a config reload; an option left out takes its
   * default, as in the constructor; `clock` and `onChange` stay as constructed). Per-endpoint
   * counts, ejection multipliers and the counters are kept: a threshold applies from the next
   * failure (a count already at a lowered threshold ejects on it), times and `maxEjectionPercent`
   * from the next ejection (endpoints ejected now return when they were due), and the panic
   * threshold from the next `eligible` call. A count set to 0 stops that check; to stop ejecting
   * altogether, set all three to 0 and call {@link returnAll}.
   * @throws RangeError (and changes nothing) on an invalid option.
   */
  configure(options: Omit<OutlierDetectorOptions, 'clock' | 'onChange'>): void {
    const c5xx = count('consecutive5xx', options.consecutive5xx ?? 5);
    const gateway = count('consecutiveGatewayFailure', options.consecutiveGatewayFailure ?? 5);
    const connect = count('consecutiveLocalOriginFailure', options.consecutiveLocalOriginFailure ?? 5);
    const baseMs = duration('baseEjectionTimeMs', options.baseEjectionTimeMs ?? 30_000);
    const maxMs = Math.max(baseMs, duration('maxEjectionTimeMs', options.maxEjectionTimeMs ?? 300_000));
    const maxEjectionPercent = percent('maxEjectionPercent', options.maxEjectionPercent ?? 50);
    const panicThresholdPercent = percent('panicThresholdPercent', options.panicThresholdPercent ?? 50);
    const intervalMs = duration('intervalMs', options.intervalMs ?? 10_000);
    this.#consecutive5xx = c5xx;
    this.#consecutiveGateway = gateway;
    this.#consecutiveConnect = connect;
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
    this.#maxEjectionPercent = maxEjectionPercent;
    this.#panicThresholdPercent = panicThresholdPercent;
    this.#intervalMs = intervalMs;
  }

  /**
   * Returns every ejected endpoint now (outlier detection turned off by a reload); their ejection
   * multipliers are kept. Returns how many came back.
   */
  returnAll(): number {
    const returned = this.#ejected.size;
    if (returned === 0) return 0;
    const now = this.#clock.now();
    for (const s of this.#ejected) {
      s.handle.ejected = false;
      s.healthySinceMs = now;
    }
    this.#ejected.clear();
    this.#changed();
    return returned;
  }

  /** Endpoints ejected right now (a gauge for metrics). */
  get ejectionsActive(): number {
    return this.#ejected.size;
  }

  /** Whether the last `eligible` call found the upstream in panic (a gauge for metrics). */
  get panic(): boolean {
    return this.#panic;
  }

  /**
   * Sets the upstream's endpoints (the whole set, ejected ones too). Endpoints that stay keep their
   * counts and ejections; endpoints that left are forgotten and their handles un-ejected.
   */
  update(all: readonly EndpointHandle[]): void {
    const next = new Map<EndpointHandle, OutlierState>();
    const now = this.#clock.now();
    for (const h of all) {
      const known = this.#states.get(h);
      if (known !== undefined) next.set(h, known);
      else {
        const s = new OutlierState(h);
        s.healthySinceMs = now;
        next.set(h, s);
      }
    }
    let changed = false;
    for (const [h, s] of this.#states) {
      if (next.has(h)) continue;
      if (this.#ejected.delete(s)) changed = true;
      h.ejected = false;
    }
    this.#states = next;
    if (changed) this.#changed();
  }

  /** Reports a successful attempt: clears the endpoint's consecutive failure counts. */
  onSuccess(handle: EndpointHandle): void {
    const s = this.#states.get(handle);
    if (s === undefined) return;
    s.consecutive5xx = 0;
    s.consecutiveGateway = 0;
    s.consecutiveConnect = 0;
  }

  /**
   * Reports a failed attempt; returns true when it ejected the endpoint. Endpoints not given to
   * `update` are ignored.
   */
  onFailure(handle: EndpointHandle, kind: OutlierFailureKind): boolean {
    const s = this.#states.get(handle);
    if (s === undefined || handle.ejected) return false;
    if (kind === 'connect') {
      s.consecutiveConnect += 1;
      if (this.#consecutiveConnect > 0 && s.consecutiveConnect >= this.#consecutiveConnect) {
        return this.#eject(s, kind);
      }
      return false;
    }
    s.consecutiveConnect = 0;
    s.consecutive5xx += 1;
    if (kind === 'gateway') {
      s.consecutiveGateway += 1;
      if (this.#consecutiveGateway > 0 && s.consecutiveGateway >= this.#consecutiveGateway) {
        return this.#eject(s, kind);
      }
    }
    if (this.#consecutive5xx > 0 && s.consecutive5xx >= this.#consecutive5xx) return this.#eject(s, kind);
    return false;
  }

  /** Returns endpoints whose ejection time has passed; returns how many came back. */
  tick(): number {
    if (this.#ejected.size === 0) return 0;
    const now = this.#clock.now();
    let returned = 0;
    for (const s of this.#ejected) {
      if (now < s.ejectedUntilMs) continue;
      this.#ejected.delete(s);
      s.handle.ejected = false;
      s.healthySinceMs = now;
      returned += 1;
    }
    if (returned > 0) this.#changed();
    return returned;
  }

  /** Clock reading (ms) when the next ejected endpoint is due back, or undefined when none is ejected. */
  nextTickAtMs(): number | undefined {
    let next: number | undefined;
    for (const s of this.#ejected) if (next === undefined || s.ejectedUntilMs < next) next = s.ejectedUntilMs;
    return next;
  }

  /**
   * The endpoints to balance over: `all` itself when none is ejected, all of them in panic (fewer
   * than `panicThresholdPercent` un-ejected), else the un-ejected ones (a new array).
   */
  eligible(all: readonly EndpointHandle[]): readonly EndpointHandle[] {
    let healthy = 0;
    for (const h of all) if (!h.ejected) healthy += 1;
    this.#panic = all.length > 0 && healthy * 100 < this.#panicThresholdPercent * all.length;
    if (healthy === all.length || this.#panic) return all;
    return all.filter((h) => !h.ejected);
  }

  #eject(s: OutlierState, kind: OutlierFailureKind): boolean {
    s.consecutive5xx = 0;
    s.consecutiveGateway = 0;
    s.consecutiveConnect = 0;
    if ((this.#ejected.size + 1) * 100 > this.#maxEjectionPercent * this.#states.size) {
      this.ejectionsOverflowTotal += 1;
      return false;
    }
    const now = this.#clock.now();
    const calm = Math.floor((now - s.healthySinceMs) / this.#intervalMs);
    s.multiplier = Math.max(0, s.multiplier - calm) + 1;
    s.ejectedUntilMs = now + Math.min(this.#baseMs * s.multiplier, this.#maxMs);
    s.handle.ejected = true;
    this.#ejected.add(s);
    this.ejectionsTotal += 1;
    this.ejectionsByKind[kind] += 1;
    this.#changed();
    return true;
  }

  #changed(): void {
    this.version += 1;
    this.#onChange?.();
  }
}

function count(name: string, v: number): number {
  if (!(Number.isInteger(v) && v >= 0))
    throw new RangeError(`outlier detection: ${name} must be an integer ≥ 0, got ${v}`);
  return v;
}

function duration(name: string, v: number): number {
  if (!(v > 0 && Number.isFinite(v)))
    throw new RangeError(`outlier detection: ${name} must be a positive number of ms, got ${v}`);
  return v;
}

function percent(name: string, v: number): number {
  if (!(v >= 0 && v <= 100))
    throw new RangeError(`outlier detection: ${name} must be a percentage 0-100, got ${v}`);
  return v;
}
