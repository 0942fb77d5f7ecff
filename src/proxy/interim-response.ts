// An endpoint's interim (1xx) answers on their way to the client: 103 Early Hints passes on, the others are dropped.
import type { DownstreamResponse } from './downstream.ts';

/** Whether the client's side of the response is gone (connection or stream destroyed). */
export function clientGone(res: DownstreamResponse): boolean {
  return 'stream' in res ? res.stream.destroyed : res.destroyed;
}

/**
 * Passes a 103 Early Hints answer's `link` header on to the client (RFC 8297; Node's
 * `writeEarlyHints`), before the final answer; other interim answers (102 Processing, 104…) are
 * dropped, as RFC 9110 §15.2 lets a proxy do for codes it does not handle. Nothing is counted: the
 * request goes on waiting for its final answer. A client gone or already answered gets nothing.
 * @param statusCode the interim answer's status (100–199).
 * @param headers its headers, as undici reports them.
 */
export function passInterim(
  res: DownstreamResponse,
  statusCode: number,
  headers: Record<string, string | string[] | undefined>,
): void {
  const link = headers.link;
  if (statusCode !== 103 || link === undefined || res.headersSent || clientGone(res)) return;
  try {
    res.writeEarlyHints({ link });
  } catch {
    // A link value Node will not send (it validates them): the hint is only a hint.
  }
}
