// HTTP/2 flow-control and concurrency settings meshlet uses on both sides of a proxied stream.

/**
 * Per-stream receive window, bytes. Node's (and the spec's) default of 64 KiB caps one stream at
 * 64 KiB per round trip; 1 MiB lets a bulk stream run at loopback speed while keeping per-stream
 * buffering bounded (measured with the bench's streaming row).
 */
export const H2_STREAM_WINDOW_BYTES = 1024 * 1024;

/** Connection-wide receive window, bytes: room for several busy streams at once. */
export const H2_CONNECTION_WINDOW_BYTES = 8 * 1024 * 1024;

/** Streams a peer may open on one connection to meshlet (Envoy's default is 2^31-1; 1,000 bounds memory). */
export const H2_MAX_CONCURRENT_STREAMS = 1000;

/**
 * How long a downstream HTTP/2 session may stay open with no stream, ms, before meshlet closes it
 * with GOAWAY (graceful: a stream that races the GOAWAY is refused, so its client may retry it), on
 * the outbound, per-upstream and inbound listeners; the gateway uses its `keepAliveTimeout`.
 * Envoy's downstream `idle_timeout` is 1 h; 5 min bounds sessions that a client opens and abandons
 * while staying above meshlet's own HTTP/2 client idle time (60 s), so the client side closes first.
 */
export const H2_SESSION_IDLE_MS = 5 * 60_000;

/** The SETTINGS meshlet's HTTP/2 servers announce. */
export const H2_SERVER_SETTINGS = Object.freeze({
  initialWindowSize: H2_STREAM_WINDOW_BYTES,
  maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
});
