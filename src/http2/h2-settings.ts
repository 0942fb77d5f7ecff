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

/** The SETTINGS meshlet's HTTP/2 servers announce. */
export const H2_SERVER_SETTINGS = Object.freeze({
  initialWindowSize: H2_STREAM_WINDOW_BYTES,
  maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
});
