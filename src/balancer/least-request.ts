// Least request: power of two random choices, keeping the one with fewer requests in flight (Envoy).
import type { EndpointHandle } from '../upstream/endpoint.ts';
import type { LoadBalancer } from './load-balancer.ts';
import { pickTwoChoices } from './sampling.ts';

/** Options of {@link LeastRequestBalancer}. */
export interface LeastRequestBalancerOptions {
  /** Uniform source in [0, 1). Defaults to `Math.random`. */
  random?: () => number;
}

const fewerActive = (candidate: EndpointHandle, incumbent: EndpointHandle): boolean =>
  candidate.active < incumbent.active;

/**
 * Draws two distinct endpoints at random and picks the one with fewer requests in flight
 * (`handle.active`), the first drawn on a tie; skips `avoid` when another endpoint exists.
 * Unlike full least-request it needs no scan, and it avoids herding onto one idle endpoint.
 * Weights are ignored, as in Envoy when all weights are equal.
 */
export class LeastRequestBalancer implements LoadBalancer {
  readonly kind = 'least_request' as const;
  readonly #random: () => number;
  #endpoints: readonly EndpointHandle[] = [];
  #index = new Map<EndpointHandle, number>();

  constructor(options: LeastRequestBalancerOptions = {}) {
    this.#random = options.random ?? Math.random;
  }

  update(endpoints: readonly EndpointHandle[]): void {
    this.#endpoints = endpoints;
    this.#index = new Map(endpoints.map((h, i) => [h, i]));
  }

  pick(_hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined {
    const avoidIndex = avoid === undefined ? -1 : (this.#index.get(avoid) ?? -1);
    return pickTwoChoices(this.#endpoints, avoidIndex, this.#random, fewerActive);
  }
}
