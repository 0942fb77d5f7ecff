// Maps a request (authority, path, headers) to an upstream: configured routes first, then the authority.
import type { IncomingHttpHeaders } from 'node:http';
import type { RouteSpec } from '../config/schema.ts';
import { MeshletError } from '../errors/meshlet-error.ts';
import type { Upstream } from '../upstream/upstream.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';
import { mergePolicy, type RequestPolicy, resolveRouteOverride } from '../upstream/upstream-settings.ts';
import { upstreamNameOf } from './authority.ts';
import { normalizePath, type PathRefusal } from './path-normalize.ts';

/** A route compiled at load time: lowercased names, no per-request parsing. */
interface CompiledRoute {
  readonly upstream: string;
  readonly authority: string | null;
  readonly pathPrefix: string | null;
  readonly stripPrefix: boolean;
  /** Match and forward the normalised path (true) or the raw one (false). */
  readonly normalizePath: boolean;
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
    normalizePath: spec.normalizePath,
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

/** The 400 `bad_request` for a path {@link normalizePath} refused. */
export function pathRefused(refusal: PathRefusal, upstream?: string): MeshletError {
  return new MeshletError(
    'bad_request',
    `the request path ${refusal.reason}, which meshlet does not forward`,
    upstream,
  );
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
   * The path is normalised once ({@link normalizePath}); a route matches, strips and forwards that
   * normalised path, or the raw one when it says `normalizePath: false`. A path normalisation refuses
   * is matched raw, and refused by the first route it matches unless that route takes it raw.
   * @param authority the Host header or the absolute-form URL's host.
   * @param path the request target in origin form, with its query.
   * @throws MeshletError `no_route` when nothing matches; `bad_request` for a refused path.
   */
  resolve(authority: string, path: string, headers: IncomingHttpHeaders): RouteTarget {
    const name = upstreamNameOf(authority);
    const normalized = normalizePath(path);
    const refusal = typeof normalized === 'string' ? null : normalized;
    const clean = typeof normalized === 'string' ? normalized : path;
    for (const route of this.#routes) {
      if (route.authority !== null && route.authority !== name) continue;
      const matched = route.normalizePath ? clean : path;
      if (route.pathPrefix !== null && !matched.startsWith(route.pathPrefix)) continue;
      if (route.headers.length !== 0 && !headersMatch(route, headers)) continue;
      if (refusal !== null && route.normalizePath) throw pathRefused(refusal, route.upstream);
      const upstream = this.#table.get(route.upstream);
      if (upstream === undefined) {
        throw new MeshletError(
          'no_route',
          `route names upstream "${route.upstream}", which is unknown`,
          route.upstream,
        );
      }
      const routed =
        route.stripPrefix && route.pathPrefix !== null ? stripPath(matched, route.pathPrefix) : matched;
      return { upstream, path: routed, policy: mergePolicy(upstream.settings.policy, route.override) };
    }
    if (refusal !== null) throw pathRefused(refusal, name === '' ? undefined : name);
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
    return { upstream, path: clean, policy: upstream.settings.policy };
  }
}
