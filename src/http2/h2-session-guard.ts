// Server-side HTTP/2 abuse guard: closes a session whose client resets most of its streams (Rapid Reset); sessions closed for abuse are counted per listener and logged.
import type { ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { Logger } from '../telemetry/logger.ts';
import { RefusalLog } from '../tls/refusal-log.ts';

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

/** Which listener a downstream HTTP/2 session came through: the `listener` label. */
export type H2ListenerKind = 'outbound' | 'upstream' | 'inbound' | 'gateway';

/** One downstream HTTP/2 session closed for abuse. */
export interface H2AbuseClose {
  readonly reason: H2AbuseReason;
  /** The client's address; undefined when the socket was gone before it could be read. */
  readonly peer: string | undefined;
  /** `rapid_reset` only: streams the session had when it was closed. */
  readonly streams?: number;
  /** `rapid_reset` only: how many of them the client reset prematurely. */
  readonly prematureResets?: number;
}

/** Told once of each session a listener closed for abuse (`H2Sessions`). */
export type H2AbuseListener = (close: H2AbuseClose) => void;

/** The daemon's counter of sessions closed for abuse (`Metrics.h2SessionsClosed`). */
export interface H2AbuseCounter {
  inc(labels: { listener: H2ListenerKind; reason: H2AbuseReason }): void;
}

/** One warning log per daemon (keyed by its counter): its remembered peers are bounded per daemon, not per listener. */
const abuseLogs = new WeakMap<H2AbuseCounter, RefusalLog>();

/**
 * What `listener` does with each session it closed for abuse: counts it in `closed`
 * (`meshlet_http2_sessions_closed_total{listener,reason}`) and logs it at warn (`http2 session
 * closed for abuse`, with peer, reason, listener and, for `rapid_reset`, streams and
 * prematureResets), once per peer address, reason and listener per 10 min ({@link RefusalLog}, at
 * most 1,024 keys per daemon): a flood of abusive sessions cannot flood the log, the next warning
 * says how many were left out (`suppressed`), and the same peer abusing another listener gets its own.
 */
export function h2AbuseReporter(
  listener: H2ListenerKind,
  closed: H2AbuseCounter,
  logger: Logger,
): H2AbuseListener {
  let log = abuseLogs.get(closed);
  if (log === undefined) {
    log = new RefusalLog(logger, { msg: 'http2 session closed for abuse' });
    abuseLogs.set(closed, log);
  }
  const refusals = log;
  return (close) => {
    closed.inc({ listener, reason: close.reason });
    const peer = close.peer ?? 'unknown';
    refusals.record(`${peer} ${close.reason} ${listener}`, {
      peer,
      reason: close.reason,
      listener,
      ...(close.streams === undefined
        ? {}
        : { streams: close.streams, prematureResets: close.prematureResets }),
    });
  };
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

/** node:http2's ENHANCE_YOUR_CALM error code (RFC 9113 §7). */
const ENHANCE_YOUR_CALM = 0xb;

/**
 * The premature-reset count of one session: a stream the client reset (or abandoned) before meshlet
 * sent its response headers, within {@link PREMATURE_RESET_LIFETIME_MS} of opening it. Once the
 * session has had {@link PREMATURE_RESET_MIN_STREAMS} streams and half or more of them ended that
 * way, it is closed with GOAWAY ENHANCE_YOUR_CALM (Envoy's rule), the streams still open are cut
 * (their upstream requests cancelled: a client's cancel never counts against an endpoint); the
 * caller reports the close as `rapid_reset`. A client that cancels less than half its calls is never closed.
 */
export class ResetGuard {
  #streams = 0;
  #premature = 0;

  /**
   * Notes that `stream`, opened at `openedAt` (`performance.now()`, ms), closed; closes `session`
   * past the limit and then returns the session's stream and premature-reset counts, else null.
   */
  streamClosed(
    session: ServerHttp2Session,
    stream: ServerHttp2Stream,
    openedAt: number,
  ): { streams: number; prematureResets: number } | null {
    if (session.closed || session.destroyed) return null;
    this.#streams++;
    if (stream.aborted && !stream.headersSent && performance.now() - openedAt < PREMATURE_RESET_LIFETIME_MS)
      this.#premature++;
    if (this.#streams < PREMATURE_RESET_MIN_STREAMS || this.#premature * 2 < this.#streams) return null;
    // An error is needed for the code to be sent (`destroy(undefined, code)` sends NO_ERROR); the
    // session's 'error' listener (H2Sessions) sees it, and it is not reported again.
    session.destroy(new Error('too many premature stream resets'), ENHANCE_YOUR_CALM);
    return { streams: this.#streams, prematureResets: this.#premature };
  }
}
