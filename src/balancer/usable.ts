// Which endpoints a hashing balancer may fall back to when a key's own endpoint is avoided or ejected.
import type { EndpointHandle } from '../upstream/endpoint.ts';

/** Whether some endpoint in `list` is neither `avoid` nor ejected. O(n), allocates nothing. */
export function hasUsable(list: readonly EndpointHandle[], avoid: EndpointHandle | undefined): boolean {
  for (let i = 0; i < list.length; i++) {
    const h = list[i]!;
    if (h !== avoid && !h.ejected) return true;
  }
  return false;
}

/** Whether some endpoint in `list` is not `avoid`. O(1). */
export function hasOther(list: readonly EndpointHandle[], avoid: EndpointHandle | undefined): boolean {
  return list.length > 1 || (list.length === 1 && list[0] !== avoid);
}
