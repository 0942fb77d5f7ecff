// An endpoint's HTTP/2 connection: undici's Client with h2 (h2c, or h2 by ALPN over mTLS), one session reused.
import type { buildConnector, Client as UndiciClient } from 'undici';
import ClientClass from 'undici/lib/dispatcher/client.js';
import {
  H2_CONNECTION_WINDOW_BYTES,
  H2_MAX_CONCURRENT_STREAMS,
  H2_STREAM_WINDOW_BYTES,
} from './h2-settings.ts';

/** Options of {@link h2Client}. */
export interface H2ClientOptions {
  /** TCP connect timeout, ms (plain endpoints). */
  connectTimeoutMs: number;
  /** A connector that opens the TLS connection (mTLS, ALPN `h2`); absent = h2c. */
  connect?: buildConnector.connector;
}

/**
 * One HTTP/2 connection to an endpoint, multiplexing every request to it (per-request balancing
 * happens above, across endpoints). undici re-dials after GOAWAY and replays, once, the streams the
 * peer had not processed (its GOAWAY last-stream-id); what still fails reaches the request path as
 * a refused stream or a reset. Windows are widened from HTTP/2's 64 KiB default. undici's `Client`
 * comes from its own module (undici's Pool loads it anyway).
 */
export function h2Client(origin: string, options: H2ClientOptions): UndiciClient {
  return new ClientClass(origin, {
    allowH2: true,
    connect: options.connect ?? { timeout: options.connectTimeoutMs },
    keepAliveTimeout: 60_000,
    h2Options: {
      useH2c: options.connect === undefined,
      maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
      connectionWindowSize: H2_CONNECTION_WINDOW_BYTES,
      settings: { initialWindowSize: H2_STREAM_WINDOW_BYTES },
    },
  } as UndiciClient.Options);
}
