// Gives the HTTP/2 sessions undici opens to meshlet's endpoints meshlet's header-list limits: undici 8.14 calls http2.connect without them.
import type { ClientSessionOptions, connect as Connect } from 'node:http2';
import type { Duplex } from 'node:stream';
import { H2_RESPONSE_HEADER_LIST_BYTES, H2_RESPONSE_HEADER_PAIRS } from './h2-settings.ts';

/** Marks a socket that one of meshlet's HTTP/2 clients connected (global: every copy of this module agrees). */
const LIMITED = Symbol.for('meshlet.h2SessionLimits');

type Marked = Duplex & { [LIMITED]?: true };
type CreateConnection = (authority: URL, options: ClientSessionOptions) => Duplex;
type ConnectFn = (...args: unknown[]) => unknown;

/** Sets meshlet's limits in the options node:http2 is about to make a session with. */
function limit(options: ClientSessionOptions): void {
  options.maxHeaderListPairs = H2_RESPONSE_HEADER_PAIRS;
  options.settings = { ...options.settings, maxHeaderListSize: H2_RESPONSE_HEADER_LIST_BYTES };
}

/**
 * node:http2's `connect`, made to apply {@link limit} to a session whose socket meshlet marked.
 * undici hands its socket over as `createConnection: () => socket`, and node:http2 calls that with
 * the very options object it then makes the session with: the only place to see whose socket it
 * is before the session exists. Every other call (no `createConnection`, an unmarked socket) goes
 * through unchanged.
 */
function limitedConnect(connect: ConnectFn): ConnectFn {
  const limited = function connectLimited(this: unknown, ...args: unknown[]): unknown {
    const [authority, options, listener] = args;
    const create = (options as { createConnection?: unknown } | null | undefined)?.createConnection;
    if (typeof options !== 'object' || options === null || typeof create !== 'function')
      return connect.apply(this, args);
    const createConnection: CreateConnection = function (this: unknown, url, sessionOptions) {
      const socket = Reflect.apply(create, this, [url, sessionOptions]) as Marked;
      if (socket?.[LIMITED] === true) limit(sessionOptions);
      return socket;
    };
    return connect.call(this, authority, { ...options, createConnection }, listener);
  };
  return Object.assign(limited, { [LIMITED]: true as const });
}

/**
 * Makes the HTTP/2 session undici is about to open over `socket` accept what meshlet's HTTP/1.1
 * side accepts: `maxHeaderListPairs` and SETTINGS_MAX_HEADER_LIST_SIZE from h2-settings.ts, so a
 * head or trailers block is judged by the byte limit (response-head-limit.ts) and not reset by
 * node:http2 at 128 fields. undici 8.14's client-h2 passes `http2.connect` none of its own, and
 * takes no option for them; it calls `http2.connect` on node:http2's module object (in-process) or
 * through src/http2/undici-http2.ts (the daemon bundle), which calls the same object, so wrapping
 * that object's `connect` (once per process, on the first HTTP/2 socket: node:http2 is not loaded
 * earlier) covers both. Call it from the connector, on each socket that will carry HTTP/2.
 */
export function limitH2Session(socket: Duplex): void {
  (socket as Marked)[LIMITED] = true;
  const http2 = process.getBuiltinModule('node:http2') as { connect: typeof Connect & { [LIMITED]?: true } };
  if (http2.connect[LIMITED] === true) return;
  http2.connect = limitedConnect(http2.connect as ConnectFn) as unknown as typeof http2.connect;
}
