// CORS per gateway route: preflights answered at the edge, allowed origins' responses given their headers.
import type { GatewayRouteSpec } from '../config/gateway-schema.ts';

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
    this.#credentials = spec.credentials;
    this.#maxAge = String(spec.maxAge);
  }

  /** Whether `origin` may read responses. */
  allows(origin: string): boolean {
    return this.#any || this.#origins.has(origin);
  }

  /** `access-control-allow-origin`: `*` only for any origin without credentials, else the origin itself. */
  #allowOrigin(origin: string): string {
    return this.#any && !this.#credentials ? '*' : origin;
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
    out.push('access-control-max-age', this.#maxAge, 'content-length', '0');
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
