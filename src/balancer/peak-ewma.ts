// Peak EWMA: power of two choices over latency × load, as linkerd2-proxy balances.
import { type Clock, systemClock } from '../clock.ts';
import type { EndpointHandle } from '../upstream/endpoint.ts';
import type { LoadBalancer } from './load-balancer.ts';
import { pickTwoChoices } from './sampling.ts';

/** Options of {@link PeakEwmaBalancer}. */
export interface PeakEwmaBalancerOptions {
  /** Time source for decay. Defaults to {@link systemClock}. */
  clock?: Clock;
  /** Uniform source in [0, 1). Defaults to `Math.random`. */
  random?: () => number;
  /** Decay time constant of the latency estimate, ms. Defaults to 10,000 (linkerd2-proxy). */
  decayMs?: number;
  /** Latency assumed for an endpoint before its first observation, ms. Defaults to 30 (linkerd2-proxy). */
  defaultRttMs?: number;
}

/**
 * linkerd2-proxy's balancer (tower's `PeakEwma`): draws two distinct endpoints at random and picks
 * the cheaper, where cost = latency estimate × (requests in flight + 1), the first drawn on a tie;
 * skips `avoid` when another endpoint exists.
 *
 * The estimate lives on the handle (`ewmaMs` at clock time `ewmaAtMs`). `observe` applies a
 * peak-sensitive EWMA: a latency above the estimate replaces it at once; one below is blended in
 * with weight `1 - e^(-elapsed/decayMs)`. Between observations the estimate decays toward zero
 * with the same time constant (applied when comparing, nothing is written; a pick reads no clock),
 * so an endpoint that was slow a while ago is tried again. An endpoint first seen by `update`
 * starts at `defaultRttMs`.
 */
export class PeakEwmaBalancer implements LoadBalancer {
  readonly kind = 'peak_ewma' as const;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #decayMs: number;
  readonly #defaultRttMs: number;
  #endpoints: readonly EndpointHandle[] = [];
  #index = new Map<EndpointHandle, number>();
  /**
   * Whether `b` costs less than `a`. Both estimates decay with the same clock, so `now` cancels out:
   * `B·e^((tb-now)/τ) < A·e^((ta-now)/τ)` ⇔ `B < A·e^((ta-tb)/τ)`. One `exp`, no clock read.
   */
  readonly #cheaper = (b: EndpointHandle, a: EndpointHandle): boolean => {
    const costA = a.ewmaMs * (a.active + 1);
    const costB = b.ewmaMs * (b.active + 1);
    const dt = a.ewmaAtMs - b.ewmaAtMs;
    return costB < (dt === 0 ? costA : costA * Math.exp(dt / this.#decayMs));
  };

  constructor(options: PeakEwmaBalancerOptions = {}) {
    const decayMs = options.decayMs ?? 10_000;
    const defaultRttMs = options.defaultRttMs ?? 30;
    if (!(decayMs > 0 && Number.isFinite(decayMs))) {
      throw new RangeError(`peak_ewma: decayMs must be a positive finite number, got ${decayMs}`);
    }
    if (!(defaultRttMs >= 0 && Number.isFinite(defaultRttMs))) {
      throw new RangeError(`peak_ewma: defaultRttMs must be a finite number ≥ 0, got ${defaultRttMs}`);
    }
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#decayMs = decayMs;
    this.#defaultRttMs = defaultRttMs;
  }

  /**
   * Replaces the endpoints. A handle with no estimate yet (`ewmaMs` and `ewmaAtMs` both 0) is given
   * `defaultRttMs` as of now; handles that stay keep their estimates across snapshots.
   */
  update(endpoints: readonly EndpointHandle[]): void {
    const now = this.#clock.now();
    for (const h of endpoints) {
      if (h.ewmaMs === 0 && h.ewmaAtMs === 0) {
        h.ewmaMs = this.#defaultRttMs;
        h.ewmaAtMs = now;
      }
    }
    this.#endpoints = endpoints;
    this.#index = new Map(endpoints.map((h, i) => [h, i]));
  }

  pick(_hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined {
    const avoidIndex = avoid === undefined ? -1 : (this.#index.get(avoid) ?? -1);
    return pickTwoChoices(this.#endpoints, avoidIndex, this.#random, this.#cheaper);
  }

  /**
   * Folds one finished attempt's latency (ms) into the endpoint's estimate. A negative latency counts
   * as 0; a non-finite one is ignored.
   */
  observe(endpoint: EndpointHandle, latencyMs: number): void {
    if (!Number.isFinite(latencyMs)) return;
    const now = this.#clock.now();
    const rtt = Math.max(latencyMs, 0);
    if (rtt > endpoint.ewmaMs) {
      endpoint.ewmaMs = rtt;
    } else {
      const elapsed = now > endpoint.ewmaAtMs ? now - endpoint.ewmaAtMs : 0;
      const decay = Math.exp(-elapsed / this.#decayMs);
      endpoint.ewmaMs = endpoint.ewmaMs * decay + rtt * (1 - decay);
    }
    endpoint.ewmaAtMs = now;
  }

  /** The endpoint's current cost (decayed estimate × (active + 1)), as `pick` compares it. */
  cost(endpoint: EndpointHandle): number {
    const decay = Math.exp((endpoint.ewmaAtMs - this.#clock.now()) / this.#decayMs);
    return endpoint.ewmaMs * decay * (endpoint.active + 1);
  }
}
