// Maps a request (authority, path, headers) to an upstream: configured routes first, then the authority.
import type { IncomingHttpHeaders } from 'node:http';
import type { RouteSpec } from '../config/schema.ts';
import { MeshletError } from '../errors/meshlet-error.ts';
import type { Upstream } from '../upstream/upstream.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';
import { mergePolicy, type RequestPolicy, resolveRouteOverride } from '../upstream/upstream-settings.ts';
import { upstreamNameOf } from './authority.ts';

/** A route compiled at load time: lowercased names, no per-request parsing. */
interface CompiledRoute {
  readonly upstream: string;
  readonly authority: string | null;
  readonly pathPrefix: string | null;
  readonly stripPrefix: boolean;
  readonly headers: readonly { name: string; exact: string | undefined; present: boolean | undefined }[];
  /** The route's timeouts/retries override, or null. */
  readonly override: Partial<RequestPolicy> | null;
}

/** Where a request goes: the upstream and the path to send it (prefix stripped when configured). */
export interface RouteTarget {
  upstream: Upstream;
  path: string;
  /** Timeouts and retries for this request: the upstream's, with the route's override applied. */
  policy: RequestPolicy;
}

function compile(spec: RouteSpec, index: number): CompiledRoute {
  return {
    upstream: spec.upstream,
    authority: spec.match.authority === undefined ? null : upstreamNameOf(spec.match.authority),
    pathPrefix: spec.match.pathPrefix ?? null,
    stripPrefix: spec.stripPrefix,
    headers: spec.match.headers.map((h) => ({
      name: h.name.toLowerCase(),
      exact: h.exact,
      present: h.present,
    })),
    override: resolveRouteOverride(spec, index),
  };
}

function headersMatch(route: CompiledRoute, headers: IncomingHttpHeaders): boolean {
  for (const h of route.headers) {
    const value = headers[h.name];
    if (h.present !== undefined && (value !== undefined) !== h.present) return false;
    if (h.exact !== undefined && value !== h.exact) return false;
  }
  return true;
}

/** Strips a path prefix, keeping a leading '/' ("/users/v1/42" minus "/users/" → "/v1/42"). */
function stripPath(path: string, prefix: string): string {
  const rest = path.slice(prefix.length);
  return rest.charCodeAt(0) === 47 /* / */ ? rest : `/${rest}`;
}

/** Resolves requests to upstreams. Rebuilt whole on a config reload. */
export class Router {
  readonly #routes: readonly CompiledRoute[];
  readonly #table: UpstreamTable;

  constructor(routes: readonly RouteSpec[], table: UpstreamTable) {
    this.#routes = routes.map(compile);
    this.#table = table;
  }

  /**
   * The upstream for a request on the outbound listener.
   * @param authority the Host header or the absolute-form URL's host.
   * @throws MeshletError `no_route` when nothing matches.
   */
  resolve(authority: string, path: string, headers: IncomingHttpHeaders): RouteTarget {
    const name = upstreamNameOf(authority);
    for (const route of this.#routes) {
      if (route.authority !== null && route.authority !== name) continue;
      if (route.pathPrefix !== null && !path.startsWith(route.pathPrefix)) continue;
      if (route.headers.length !== 0 && !headersMatch(route, headers)) continue;
      const upstream = this.#table.get(route.upstream);
      if (upstream === undefined) {
        throw new MeshletError(
          'no_route',
          `route names upstream "${route.upstream}", which is unknown`,
          route.upstream,
        );
      }
      const routed =
        route.stripPrefix && route.pathPrefix !== null ? stripPath(path, route.pathPrefix) : path;
      return { upstream, path: routed, policy: mergePolicy(upstream.settings.policy, route.override) };
    }
    const upstream = name === '' ? undefined : this.#table.get(name);
    if (upstream === undefined) {
      throw new MeshletError(
        'no_route',
        name === ''
          ? 'the request names no upstream (no Host header)'
          : `no route or upstream matches "${name}"`,
        name === '' ? undefined : name,
      );
    }
    return { upstream, path, policy: upstream.settings.policy };
  }
}
