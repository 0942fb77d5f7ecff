// An upgrade request that announces a body, which no tunnel can carry: refused on both listeners in the same words.
import type { IncomingMessage } from 'node:http';
import { MeshletError } from '../errors/meshlet-error.ts';

/**
 * The refusal (400 `bad_request`) of an upgrade request that announces a body (a `Content-Length`
 * above 0, or any `Transfer-Encoding`), else null. The body would have to reach the next hop before
 * its 101, but node:http hands it over as part of the upgraded stream (`head`), which flows only
 * after the 101: the next hop would wait for it until its timeout (and an endpoint be blamed for
 * it). No WebSocket client sends one.
 * @param upstream the upstream the tunnel was routed to, for the error (outbound), if any.
 */
export function upgradeBodyRefusal(req: IncomingMessage, upstream?: string): MeshletError | null {
  const length = req.headers['content-length'];
  const announced =
    req.headers['transfer-encoding'] !== undefined || (length !== undefined && Number(length) !== 0);
  return announced
    ? new MeshletError('bad_request', 'an Upgrade request with a body is not supported', upstream)
    : null;
}
