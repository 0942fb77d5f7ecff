// The contract every load balancer implements: a pure picker over the upstream's eligible endpoints.
import type { EndpointHandle } from '../upstream/endpoint.ts';

/** Names of the load balancers config may choose. */
export type LoadBalancerKind =
  'round_robin' | 'random' | 'least_request' | 'weighted' | 'ring_hash' | 'maglev' | 'peak_ewma';

/**
 * A load balancer picks one endpoint per attempt. It holds no sockets: the upstream calls `update`
 * with the eligible endpoints whenever that set changes (new discovery snapshot, an ejection or its
 * end), and `pick` on the request path, which must not allocate.
 */
export interface LoadBalancer {
  readonly kind: LoadBalancerKind;
  /** Replaces the set of endpoints to balance over. The array is not mutated afterwards. */
  update(endpoints: readonly EndpointHandle[]): void;
  /**
   * Picks an endpoint, or `undefined` when there is none.
   * @param hashKey key for hashing balancers (ring_hash, maglev); others ignore it.
   * @param avoid an endpoint to skip when another one exists (the previous attempt's, on retry).
   */
  pick(hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined;
  /** Optional: told the latency (ms) of every finished attempt on an endpoint (peak_ewma uses it). */
  observe?(endpoint: EndpointHandle, latencyMs: number): void;
}
