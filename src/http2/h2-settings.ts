// HTTP/2 flow-control, concurrency and header-list settings meshlet uses on both sides of a proxied stream.
import { maxHeaderSize } from 'node:http';

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

/**
 * The response-head byte limit, bytes: an endpoint's response head, or its trailers, whose field
 * names and values add up to this many bytes or more fails the attempt as `response headers too
 * large` (502 `upstream_unreachable`). It is the limit undici's HTTP/1.1 client applies, counted as
 * it counts (names and values, pseudo-headers left out): Node's `http.maxHeaderSize`, 16 KiB
 * unless node runs with `--max-http-header-size`.
 */
export const RESPONSE_HEAD_BYTES = maxHeaderSize;

/**
 * How many header fields node:http2 may accept in one response head or trailers block from an
 * endpoint (its `maxHeaderListPairs`, default 128): a block under {@link RESPONSE_HEAD_BYTES} has
 * fewer fields than that many bytes (each takes at least one, a 1-character name with an empty
 * value), plus `:status`. So the byte limit decides, as over HTTP/1.1, never the count.
 */
export const H2_RESPONSE_HEADER_PAIRS = RESPONSE_HEAD_BYTES + 1;

/**
 * The SETTINGS_MAX_HEADER_LIST_SIZE meshlet's HTTP/2 client announces to endpoints, octets: the
 * largest header list of a block under {@link RESPONSE_HEAD_BYTES}, as RFC 9113 §6.5.2 sizes it
 * (name + value + 32 octets per field, `:status` included; 528 KiB for 16 KiB). node:http2 enforces
 * what it announces (a larger list resets the stream, ENHANCE_YOUR_CALM), so less would refuse
 * blocks of many small fields that HTTP/1.1 passes, and an endpoint that honours the setting (as
 * grpc-go does) would not even send them; node:http2's default, 65,535, did (undici announced
 * none). Blocks between the byte limit and this size get meshlet's own 502.
 */
export const H2_RESPONSE_HEADER_LIST_BYTES =
  RESPONSE_HEAD_BYTES + ':status'.length + 3 + 32 * H2_RESPONSE_HEADER_PAIRS;
