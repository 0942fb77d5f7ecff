// Weighted round robin, smooth as nginx does it: exact proportions over a cycle and no bursts.
import type { EndpointHandle } from '../upstream/endpoint.ts';
import type { LoadBalancer } from './load-balancer.ts';
import { effectiveWeight } from './weight.ts';

/**
 * nginx's smooth weighted round robin over `endpoint.weight` (non-positive or non-finite weights
 * count as 1). Each pick adds every endpoint's weight to its running score, picks the highest
 * score (the earliest on a tie) and subtracts the total weight from it. Over a cycle of
 * `sum(weights)` picks each endpoint is chosen exactly `weight` times, interleaved: weights 5:1:1
 * give `a a b a c a a`. `avoid` is skipped when another endpoint exists (the skipped endpoint
 * keeps its score, so it is served first afterwards). Scores restart from zero on `update`.
 * A pick is O(n) in the number of endpoints and allocates nothing.
 */
export class WeightedRoundRobinBalancer implements LoadBalancer {
  readonly kind = 'weighted' as const;
  #endpoints: readonly EndpointHandle[] = [];
  #weights: Float64Array = new Float64Array(0);
  #scores: Float64Array = new Float64Array(0);
  #total = 0;

  update(endpoints: readonly EndpointHandle[]): void {
    const n = endpoints.length;
    this.#endpoints = endpoints;
    this.#weights = new Float64Array(n);
    this.#scores = new Float64Array(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const w = effectiveWeight(endpoints[i]!);
      this.#weights[i] = w;
      total += w;
    }
    this.#total = total;
  }

  pick(_hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined {
    const list = this.#endpoints;
    const n = list.length;
    if (n <= 1) return list[0];
    const weights = this.#weights;
    const scores = this.#scores;
    let best = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const s = scores[i]! + weights[i]!;
      scores[i] = s;
      if (s > bestScore && list[i] !== avoid) {
        best = i;
        bestScore = s;
      }
    }
    scores[best] = bestScore - this.#total;
    return list[best];
  }
}
