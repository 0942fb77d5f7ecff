// CORS per gateway route: preflights answered at the edge, allowed origins' responses given their headers.
import type { GatewayRouteSpec } from '../config/gateway-schema.ts';
import type { DownstreamResponse } from '../proxy/downstream.ts';

/** A route's CORS policy, compiled once. */
export class CorsPolicy {
  readonly #any: boolean;
  readonly #origins: ReadonlySet<string>;
  readonly #methods: string;
  readonly #headers: string | null;
  readonly #expose: string | null;
  readonly #credentials: boolean;
  readonly #maxAge: string;

  constructor(spec: NonNullable<GatewayRouteSpec['cors']>, routeMethods: readonly string[] | undefined) {
    this.#any = spec.origins.includes('*');
    this.#origins = new Set(spec.origins);
    this.#methods = (spec.methods ?? routeMethods ?? ['GET', 'HEAD', 'POST']).join(', ');
    this.#headers = spec.headers === undefined ? null : spec.headers.join(', ');
    this.#expose = spec.exposeHeaders.length === 0 ? null : spec.exposeHeaders.join(', ');
    // The schema refuses `*` with credentials; should a spec get here anyway, a wildcard never
    // vouches for credentials: the origin is never echoed beside `allow-credentials: true`.
    this.#credentials = spec.credentials && !this.#any;
    this.#maxAge = String(spec.maxAge);
  }

  /** Whether `origin` may read responses. */
  allows(origin: string): boolean {
    return this.#any || this.#origins.has(origin);
  }

  /** `access-control-allow-origin`: `*` for any origin (never with credentials), else the origin itself. */
  #allowOrigin(origin: string): string {
    return this.#any ? '*' : origin;
  }

  /**
   * The preflight answer's headers (`[name, value, …]`, status 204): the CORS headers when the origin
   * is allowed, none otherwise (the browser then refuses the real request). `vary` always.
   */
  preflight(origin: string, requestHeaders: string | undefined): string[] {
    const out = ['vary', 'origin, access-control-request-method, access-control-request-headers'];
    if (!this.allows(origin)) return out;
    out.push(
      'access-control-allow-origin',
      this.#allowOrigin(origin),
      'access-control-allow-methods',
      this.#methods,
    );
    const headers = this.#headers ?? requestHeaders;
    if (headers !== undefined && headers !== '') out.push('access-control-allow-headers', headers);
    if (this.#credentials) out.push('access-control-allow-credentials', 'true');
    // No content-length: a 204 never carries one (RFC 9110 §8.6); node:http frames a 204 without it.
    out.push('access-control-max-age', this.#maxAge);
    return out;
  }

  /** The headers an allowed origin's actual response gets (`[name, value, …]`); only `vary` for others. */
  response(origin: string): string[] {
    if (!this.allows(origin)) return ['vary', 'origin'];
    const out = ['vary', 'origin', 'access-control-allow-origin', this.#allowOrigin(origin)];
    if (this.#credentials) out.push('access-control-allow-credentials', 'true');
    if (this.#expose !== null) out.push('access-control-expose-headers', this.#expose);
    return out;
  }
}

/** Vary's tokens, lowercased, from one or more field values. */
function varyTokens(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const v of values) for (const t of v.split(',')) if (t.trim() !== '') out.push(t.trim().toLowerCase());
  return out;
}

/**
 * The upstream's `[name, value, …]` response headers with the gateway's CORS headers winning: its
 * `access-control-*` are dropped (the gateway's, set on the response, stay), and its `vary` is kept
 * with the gateway's tokens (`own`) added once, unless it already says `*`.
 */
export function mergeCorsHeaders(upstream: readonly string[], own: string | undefined): string[] {
  const out: string[] = [];
  const vary: string[] = [];
  for (let i = 0; i < upstream.length; i += 2) {
    const name = upstream[i]!;
    const lower = name.toLowerCase();
    if (lower.startsWith('access-control-')) continue;
    if (lower === 'vary') vary.push(upstream[i + 1]!);
    else out.push(name, upstream[i + 1]!);
  }
  if (vary.length === 0) return out; // the gateway's own `vary`, if any, stays as set
  const tokens = varyTokens(vary);
  if (own !== undefined && !tokens.includes('*')) {
    for (const t of varyTokens([own])) if (!tokens.includes(t)) tokens.push(t);
  }
  out.push('vary', tokens.join(', '));
  return out;
}

/**
 * The upstream's response head on a route with `cors` (`EdgeHeaders.responseHeaders`): the gateway
 * is the only author of the CORS headers. Node lets headers given to `writeHead` replace those set
 * before (the gateway's): an upstream's `vary: accept-encoding` would drop `vary: origin` (a shared
 * cache could then serve one origin's answer to another), and its `access-control-allow-origin: *`
 * would stand beside the gateway's `allow-credentials: true`. So it goes through
 * {@link mergeCorsHeaders} with the `vary` the gateway set on `res`.
 */
export function corsResponseHeaders(head: string[], res: DownstreamResponse): string[] {
  const own = res.getHeader('vary');
  return mergeCorsHeaders(head, own === undefined ? undefined : String(own));
}
