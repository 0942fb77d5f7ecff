// Round robin: each pick takes the next endpoint in order (Envoy's default, equal weights).
import type { EndpointHandle } from '../upstream/endpoint.ts';
import type { LoadBalancer } from './load-balancer.ts';

/** Cycles through the endpoints in order; skips `avoid` when another endpoint exists. */
export class RoundRobinBalancer implements LoadBalancer {
  readonly kind = 'round_robin' as const;
  #endpoints: readonly EndpointHandle[] = [];
  #next = 0;

  update(endpoints: readonly EndpointHandle[]): void {
    this.#endpoints = endpoints;
    if (this.#next >= endpoints.length) this.#next = 0;
  }

  pick(_hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined {
    const list = this.#endpoints;
    const n = list.length;
    if (n === 0) return undefined;
    let i = this.#next;
    let chosen = list[i]!;
    if (chosen === avoid && n > 1) {
      i = i + 1 === n ? 0 : i + 1;
      chosen = list[i]!;
    }
    this.#next = i + 1 === n ? 0 : i + 1;
    return chosen;
  }
}
