// Random: each pick takes an endpoint uniformly at random (Envoy's and Dapr's `random`).
import type { EndpointHandle } from '../upstream/endpoint.ts';
import type { LoadBalancer } from './load-balancer.ts';
import { pickUniform } from './sampling.ts';

/** Options of {@link RandomBalancer}. */
export interface RandomBalancerOptions {
  /** Uniform source in [0, 1). Defaults to `Math.random`. */
  random?: () => number;
}

/** Picks an endpoint uniformly at random; skips `avoid` when another endpoint exists. */
export class RandomBalancer implements LoadBalancer {
  readonly kind = 'random' as const;
  readonly #random: () => number;
  #endpoints: readonly EndpointHandle[] = [];
  #index = new Map<EndpointHandle, number>();

  constructor(options: RandomBalancerOptions = {}) {
    this.#random = options.random ?? Math.random;
  }

  update(endpoints: readonly EndpointHandle[]): void {
    this.#endpoints = endpoints;
    this.#index = new Map(endpoints.map((h, i) => [h, i]));
  }

  pick(_hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined {
    const avoidIndex = avoid === undefined ? -1 : (this.#index.get(avoid) ?? -1);
    return pickUniform(this.#endpoints, avoidIndex, this.#random);
  }
}
