// What undici's client-h2 gets for `require('node:http2')` inside the daemon bundle: node:http2 loads on the first HTTP/2 connection, not with undici.
import type * as http2 from 'node:http2';

/**
 * The constants undici's client-h2 reads when it loads, spelled out (RFC 9113 pseudo-header and
 * header names, nghttp2 error codes); `undici-http2.test.ts` holds them equal to node:http2's.
 */
export const constants = {
  HTTP2_HEADER_AUTHORITY: ':authority',
  HTTP2_HEADER_METHOD: ':method',
  HTTP2_HEADER_PATH: ':path',
  HTTP2_HEADER_SCHEME: ':scheme',
  HTTP2_HEADER_CONTENT_LENGTH: 'content-length',
  HTTP2_HEADER_EXPECT: 'expect',
  HTTP2_HEADER_STATUS: ':status',
  HTTP2_HEADER_PROTOCOL: ':protocol',
  NGHTTP2_NO_ERROR: 0,
  NGHTTP2_PROTOCOL_ERROR: 1,
  NGHTTP2_REFUSED_STREAM: 7,
  // undici ≥ 8.14 closes an aborted stream with CANCEL (the fix for the early-abort busy loop).
  NGHTTP2_CANCEL: 8,
} as const;

/** `http2.connect`, loading node:http2 on the first call. */
export const connect: typeof http2.connect = ((...args: Parameters<typeof http2.connect>) =>
  process.getBuiltinModule('node:http2').connect(...args)) as typeof http2.connect;
