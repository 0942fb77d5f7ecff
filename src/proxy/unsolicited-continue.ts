// Makes undici's HTTP/1.1 response parser take an endpoint's 100 Continue as the interim answer it is, not as a broken connection.
import { PassThrough } from 'node:stream';
import connectH1 from 'undici/lib/dispatcher/client-h1.js';
import symbols from 'undici/lib/core/symbols.js';

/** The part of undici's (internal) llhttp parser this module touches. */
interface H1Parser {
  socket: { destroyed: boolean };
  statusCode: number;
  headers: unknown[];
  headersSize: number;
  timeout: { refresh?: () => void } | null;
  onHeadersComplete(statusCode: number, upgrade: boolean, shouldKeepAlive: boolean): number;
  destroy(): void;
}

let installed = false;

/**
 * undici never sends `Expect: 100-continue` on HTTP/1.1 and takes any `100 Continue` it reads for
 * a bad response: it destroys the connection, so an endpoint that answers a request with an
 * unsolicited 100 before its real answer (RFC 9110 §15.2: a client must accept a 1xx it did not
 * expect; some servers send one for every request with a body) failed as a connection reset, was
 * retried, counted against the endpoint and ended in 502. After this call undici's parser drops a
 * 100 like Envoy does (it answers `Expect` itself and swallows the endpoint's 100s) and goes on
 * reading the final answer on the same connection. Other 1xx codes already reach the exchange.
 *
 * undici's parser class is internal: it is reached through a parser built on a stand-in socket
 * (no connection is made) and its `onHeadersComplete` wrapped, once per process. Called before the
 * first HTTP/1.1 dispatch (compiling undici's llhttp then rather than at start keeps idle memory as
 * it was); later calls return at once. Should a later undici change these internals (or run its
 * experimental milo parser, `UNDICI_USE_MILO`), nothing is wrapped and undici's own handling stays;
 * test/core/interim-unsolicited.test.ts fails then.
 */
export function acceptUnsolicitedContinue(): void {
  if (installed) return;
  installed = true;
  try {
    wrapParser();
  } catch {
    // See above: undici's handling of a 100 stays as it is.
  }
}

function wrapParser(): void {
  const standIn = new PassThrough();
  connectH1({}, standIn);
  const parser = (standIn as unknown as Record<symbol, H1Parser | undefined>)[symbols.kParser];
  standIn.removeAllListeners();
  if (parser === undefined) return;
  parser.destroy();
  const proto = Object.getPrototypeOf(parser) as H1Parser;
  const original = proto.onHeadersComplete;
  if (typeof original !== 'function' || !('llhttp' in parser)) return;
  proto.onHeadersComplete = function onHeadersComplete(
    this: H1Parser,
    statusCode: number,
    upgrade: boolean,
    shouldKeepAlive: boolean,
  ): number {
    if (statusCode !== 100 || upgrade) return original.call(this, statusCode, upgrade, shouldKeepAlive);
    if (this.socket.destroyed) return -1;
    // What undici does with any other 1xx, without telling the request: llhttp skips its (absent)
    // body, onMessageComplete resets the state and the next response head is parsed.
    this.statusCode = statusCode;
    this.headers = [];
    this.headersSize = 0;
    this.timeout?.refresh?.();
    return 1;
  };
}
