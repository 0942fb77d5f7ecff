// Gateway routes compiled at load: the outbound matcher (path prefix, headers, normalised path) plus methods and host.
import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayRouteSpec } from '../config/gateway-schema.ts';
import { MeshletError } from '../errors/meshlet-error.ts';
import { normalizePath, type PathRefusal } from '../route/path-normalize.ts';
import { pathRefused } from '../route/router.ts';

/**
 * A 405 `method_not_allowed` with the methods the target takes, for its `allow` header (RFC 9110
 * §15.5.6 requires one on every 405).
 */
export class MethodNotAllowed extends MeshletError {
  /** The `allow` header's value: the allowed methods, comma-separated. */
  readonly allow: string;
  constructor(message: string, allow: string) {
    super('method_not_allowed', message);
    this.allow = allow;
  }
}

/** A gateway route's matcher, compiled once. */
export interface RouteMatcher {
  readonly pathPrefix: string | null;
  /** Exact host, or a `.suffix` for `*.suffix`; null = any. */
  readonly host: string | null;
  readonly hostWildcard: boolean;
  /** Upper-case methods, or null = any. */
  readonly methods: ReadonlySet<string> | null;
  readonly headers: readonly { name: string; exact: string | undefined; present: boolean | undefined }[];
  readonly stripPrefix: boolean;
  readonly normalizePath: boolean;
}

/** Compiles a route's `match`, `stripPrefix` and `normalizePath`. */
export function compileMatcher(spec: GatewayRouteSpec): RouteMatcher {
  const host = spec.match.host ?? null;
  const wildcard = host !== null && host.startsWith('*.');
  return {
    pathPrefix: spec.match.pathPrefix ?? null,
    host: wildcard ? host.slice(1) : host,
    hostWildcard: wildcard,
    methods: spec.match.methods === undefined ? null : new Set(spec.match.methods),
    headers: spec.match.headers.map((h) => ({
      name: h.name.toLowerCase(),
      exact: h.exact,
      present: h.present,
    })),
    stripPrefix: spec.stripPrefix,
    normalizePath: spec.normalizePath,
  };
}

/** The Host header's name, lowercased, without its port. */
export function hostOf(value: string | undefined): string {
  if (value === undefined) return '';
  let end = value.length;
  if (value.charCodeAt(0) === 91 /* [ */) end = value.indexOf(']') + 1 || end;
  else {
    const colon = value.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  return value.slice(0, end).toLowerCase();
}

function hostMatches(m: RouteMatcher, host: string): boolean {
  if (m.host === null) return true;
  return m.hostWildcard ? host.endsWith(m.host) && host.length > m.host.length : host === m.host;
}

function headersMatch(m: RouteMatcher, headers: IncomingHttpHeaders): boolean {
  for (const h of m.headers) {
    const value = headers[h.name];
    if (h.present !== undefined && (value !== undefined) !== h.present) return false;
    if (h.exact !== undefined && value !== h.exact) return false;
  }
  return true;
}

/** Strips a path prefix, keeping a leading '/'. */
function stripPath(path: string, prefix: string): string {
  const rest = path.slice(prefix.length);
  return rest.charCodeAt(0) === 47 /* / */ ? rest : `/${rest}`;
}

/** A match: the route's index and the path to send upstream. */
export interface RouteMatch {
  readonly index: number;
  readonly path: string;
}

/**
 * A `;` parameter in a path segment (`/admin;x/secret`), refused at the edge like an encoded slash:
 * Tomcat, Jetty and Spring drop it and read `/admin/secret`, so a path that misses an authenticated
 * `/admin/` route and falls through to a public catch-all would reach the admin page there. A route
 * with `normalizePath: false` still takes such paths as they came.
 */
export const PATH_PARAMETER: PathRefusal = Object.freeze({
  reason: 'has a ";" path parameter, which upstreams read differently (Tomcat and Spring drop it)',
});

/** Whether the path part of a target (before any `?`) holds a `;`. */
function hasPathParameter(target: string): boolean {
  const semi = target.indexOf(';');
  if (semi === -1) return false;
  const query = target.indexOf('?');
  return query === -1 || semi < query;
}

/**
 * The first route matching a request, and the path to forward; as the outbound router does, the
 * path is normalised once and a refused path (`%2F`, `\`, a `;` parameter) is a 400 from the first route it
 * matches. Nothing else is routable: no match is 404 `no_route`, and a path that matched only
 * with another method is 405 with `allow`.
 * @param method the request's method (a preflight passes the method it asks for).
 * @param target the request target (origin form, with its query).
 */
export function matchRoute(
  routes: readonly RouteMatcher[],
  method: string,
  host: string,
  target: string,
  headers: IncomingHttpHeaders,
): RouteMatch | MeshletError {
  const normalized = normalizePath(target);
  const refusal =
    typeof normalized !== 'string' ? normalized : hasPathParameter(normalized) ? PATH_PARAMETER : null;
  const clean = typeof normalized === 'string' ? normalized : target;
  let allowed: Set<string> | null = null;
  for (let i = 0; i < routes.length; i++) {
    const m = routes[i]!;
    if (!hostMatches(m, host)) continue;
    const path = m.normalizePath ? clean : target;
    if (m.pathPrefix !== null && !path.startsWith(m.pathPrefix)) continue;
    if (m.headers.length !== 0 && !headersMatch(m, headers)) continue;
    if (m.methods !== null && !m.methods.has(method)) {
      allowed ??= new Set();
      for (const x of m.methods) allowed.add(x);
      continue;
    }
    if (refusal !== null && m.normalizePath) return pathRefused(refusal);
    return { index: i, path: m.stripPrefix && m.pathPrefix !== null ? stripPath(path, m.pathPrefix) : path };
  }
  if (refusal !== null) return pathRefused(refusal);
  if (allowed !== null) {
    const allow = [...allowed].join(', ');
    return new MethodNotAllowed(
      `method ${method} is not allowed on this gateway route (allowed: ${allow})`,
      allow,
    );
  }
  return new MeshletError('no_route', 'no gateway route matches the request');
}
