// Server-side HTTP/2 abuse guard: closes a session whose client resets most of its streams (Rapid Reset), and counts sessions closed for abuse.
import type { ServerHttp2Session, ServerHttp2Stream } from 'node:http2';

/**
 * Streams a session must have had before its share of premature resets is judged (Envoy's
 * `premature_reset_total_stream_count`, 500). nghttp2's own limit (a burst of 1,000 resets, then 33
 * a second) never closes a client that resets every stream at under 33 a second.
 */
export const PREMATURE_RESET_MIN_STREAMS = 500;

/** A reset counts as premature when the stream lived less than this, ms (Envoy's `premature_reset_min_stream_lifetime_seconds`, 1 s). */
export const PREMATURE_RESET_LIFETIME_MS = 1000;

/** Why meshlet's HTTP/2 server closed a downstream session for abuse: the `reason` label. */
export const H2_ABUSE_REASONS = [
  /** Half or more of its streams (at least {@link PREMATURE_RESET_MIN_STREAMS}) reset before any answer (CVE-2023-44487). */
  'rapid_reset',
  /** nghttp2 saw a PING, SETTINGS or RST_STREAM flood (acknowledgements piling up unread) or too many SETTINGS. */
  'flood',
  /** A header block spread over too many CONTINUATION frames (CVE-2024-27983 class). */
  'continuation_flood',
  /** More than node:http2's `maxSessionInvalidFrames` (1,000) invalid frames, empty DATA frames included. */
  'invalid_frames',
  /** Any other connection error node:http2 closed the session for (nghttp2's own reset rate limit among them). */
  'protocol_error',
] as const;

export type H2AbuseReason = (typeof H2_ABUSE_REASONS)[number];

/** Sessions closed for abuse in this process, by index in {@link H2_ABUSE_REASONS} (read at scrape). */
const closed = new Float64Array(H2_ABUSE_REASONS.length);

/** How many downstream HTTP/2 sessions every listener in this process closed for abuse, by reason. */
export function h2SessionsClosedForAbuse(): ReadonlyMap<H2AbuseReason, number> {
  return new Map(H2_ABUSE_REASONS.map((r, i) => [r, closed[i]!]));
}

function count(reason: H2AbuseReason): void {
  closed[H2_ABUSE_REASONS.indexOf(reason)]! += 1;
}

/** nghttp2 error numbers node:http2 reports on `ERR_HTTP2_ERROR` (its `errno`). */
const NGHTTP2_ERR_TOO_MANY_SETTINGS = -537;
const NGHTTP2_ERR_FLOODED = -904;
const NGHTTP2_ERR_TOO_MANY_CONTINUATIONS = -905;

/**
 * Why node:http2 closed a session, from the session's `error`; null for an error that is not the
 * client's abuse (the socket reset, the peer's own GOAWAY with an error code).
 */
export function abuseReasonOf(err: NodeJS.ErrnoException): H2AbuseReason | null {
  if (err.code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES') return 'invalid_frames';
  if (err.code !== 'ERR_HTTP2_ERROR') return null;
  switch (err.errno) {
    case NGHTTP2_ERR_FLOODED:
    case NGHTTP2_ERR_TOO_MANY_SETTINGS:
      return 'flood';
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
      return 'continuation_flood';
    default:
      return 'protocol_error';
  }
}

/** Counts a session node:http2 ended with `err` when it was the client's abuse. */
export function noteSessionError(err: NodeJS.ErrnoException): void {
  const reason = abuseReasonOf(err);
  if (reason !== null) count(reason);
}

/** node:http2's ENHANCE_YOUR_CALM error code (RFC 9113 §7). */
const ENHANCE_YOUR_CALM = 0xb;

/**
 * The premature-reset count of one session: a stream the client reset (or abandoned) before meshlet
 * sent its response headers, within {@link PREMATURE_RESET_LIFETIME_MS} of opening it. Once the
 * session has had {@link PREMATURE_RESET_MIN_STREAMS} streams and half or more of them ended that
 * way, it is closed with GOAWAY ENHANCE_YOUR_CALM (Envoy's rule), the streams still open are cut
 * (their upstream requests cancelled: a client's cancel never counts against an endpoint) and the
 * close is counted as `rapid_reset`. A client that cancels less than half its calls is never closed.
 */
export class ResetGuard {
  #streams = 0;
  #premature = 0;

  /** Notes that `stream`, opened at `openedAt` (`performance.now()`, ms), closed; closes `session` past the limit. */
  streamClosed(session: ServerHttp2Session, stream: ServerHttp2Stream, openedAt: number): void {
    if (session.closed || session.destroyed) return;
    this.#streams++;
    if (stream.aborted && !stream.headersSent && performance.now() - openedAt < PREMATURE_RESET_LIFETIME_MS)
      this.#premature++;
    if (this.#streams < PREMATURE_RESET_MIN_STREAMS || this.#premature * 2 < this.#streams) return;
    count('rapid_reset');
    // An error is needed for the code to be sent (`destroy(undefined, code)` sends NO_ERROR); the
    // session's 'error' listener (H2Sessions) sees it, and it is not counted again.
    session.destroy(new Error('too many premature stream resets'), ENHANCE_YOUR_CALM);
  }
}
