// Fails an HTTP/2 attempt whose response head or trailers reach the response-head byte limit, as undici's HTTP/1.1 parser fails one.
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import errors from 'undici/lib/core/errors.js';
import { ForwardingHandler } from './forwarding-handler.ts';
import { RESPONSE_HEAD_BYTES } from './h2-settings.ts';

/**
 * The bytes of a header block as undici's HTTP/1.1 parser counts them: each field's name and
 * value (an array value: each of its fields). node:http2 hands headers over as latin1 strings, one
 * character per byte; it joins repeated fields other than `set-cookie` with `, ` (2 bytes instead
 * of the name again).
 */
export function headerBytes(headers: IncomingHttpHeaders | null | undefined): number {
  if (headers === null || headers === undefined) return 0;
  let n = 0;
  for (const name in headers) {
    const value = headers[name];
    if (typeof value === 'string') n += name.length + value.length;
    else if (Array.isArray(value)) for (const v of value) n += name.length + v.length;
  }
  return n;
}

/**
 * The handler undici's HTTP/2 client hears from: passes every callback on to `handler`, except a
 * response head or trailers of {@link RESPONSE_HEAD_BYTES} or more (undici's `HeadersOverflowError`,
 * `UND_ERR_HEADERS_OVERFLOW`, the error its HTTP/1.1 parser raises for the same head): a head aborts
 * the attempt (its stream is reset with CANCEL), trailers end it as that error instead of its end.
 * The request path then answers and counts it as over HTTP/1.1 (502 `upstream_unreachable`,
 * "response headers too large", a reset against the endpoint).
 */
export class ResponseHeadLimit extends ForwardingHandler {
  override onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (headerBytes(headers) >= RESPONSE_HEAD_BYTES) {
      controller.abort(new errors.HeadersOverflowError());
      return;
    }
    super.onResponseStart(controller, statusCode, headers, statusMessage);
  }

  override onResponseEnd(controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (headerBytes(trailers) >= RESPONSE_HEAD_BYTES) {
      this.handler.onResponseError?.(controller, new errors.HeadersOverflowError());
      return;
    }
    super.onResponseEnd(controller, trailers);
  }
}
