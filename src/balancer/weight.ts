// How balancers read an endpoint's weight: positive finite weights as given, anything else as 1.
import type { EndpointHandle } from '../upstream/endpoint.ts';

/**
 * The weight a balancer uses for an endpoint: `endpoint.weight` when it is a positive finite
 * number, otherwise 1 (the default weight), so one bad registry entry cannot starve or flood.
 */
export function effectiveWeight(handle: EndpointHandle): number {
  const w = handle.endpoint.weight;
  return w > 0 && Number.isFinite(w) ? w : 1;
}
