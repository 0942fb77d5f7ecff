// The admin proto's Upstream and Endpoint messages, built from the view `GET /upstreams` answers.

/** One endpoint as `GET /upstreams` shows it. */
interface EndpointJson {
  id: string;
  address: string;
  port: number;
  weight: number;
  tags: string[];
  transport: string;
  protocol: string | null;
  tls: string;
  state: string;
  active: number;
}

/** One upstream as `GET /upstreams` shows it. */
interface UpstreamJson {
  loadBalancer: string;
  synced: boolean;
  healthy: number;
  total: number;
  endpoints: EndpointJson[];
  circuitBreaker: string;
  outlierDetection: { ejectionsActive: number; panic: boolean };
  limits: { activeRequests: number; pendingRequests: number; activeRetries: number };
  fallback?: string | null;
}

/** `meshlet.admin.v1.Upstream` (proto-loader's camelCase field names). */
export interface UpstreamMessage {
  name: string;
  loadBalancer: string;
  synced: boolean;
  healthy: number;
  total: number;
  endpoints: Record<string, unknown>[];
  circuitBreaker: string;
  ejectionsActive: number;
  panic: boolean;
  activeRequests: number;
  pendingRequests: number;
  activeRetries: number;
  fallback: string;
}

/** Converts `GET /upstreams`' `upstreams` map to the proto's messages, sorted by name. */
export function upstreamMessages(upstreams: Record<string, unknown>): UpstreamMessage[] {
  return Object.entries(upstreams as Record<string, UpstreamJson>)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, u]) => ({
      name,
      loadBalancer: u.loadBalancer,
      synced: u.synced,
      healthy: u.healthy,
      total: u.total,
      endpoints: u.endpoints.map((e) => ({
        id: e.id,
        address: e.address,
        port: e.port,
        weight: e.weight,
        tags: e.tags,
        transport: e.transport,
        protocol: e.protocol ?? '',
        tls: e.tls,
        state: e.state,
        active: e.active,
      })),
      circuitBreaker: u.circuitBreaker,
      ejectionsActive: u.outlierDetection.ejectionsActive,
      panic: u.outlierDetection.panic,
      activeRequests: u.limits.activeRequests,
      pendingRequests: u.limits.pendingRequests,
      activeRetries: u.limits.activeRetries,
      fallback: u.fallback ?? '',
    }));
}

/**
 * What a watcher is told about: the endpoint sets (who, where, weight, ejected or not), breaker
 * states, ejections, panic and sync, as a string that changes exactly when one of them does.
 * Request counters (`active`, limits) are left out: they change with every request.
 */
export function fingerprint(upstreams: readonly UpstreamMessage[]): string {
  return JSON.stringify(
    upstreams.map((u) => [
      u.name,
      u.synced,
      u.circuitBreaker,
      u.ejectionsActive,
      u.panic,
      u.loadBalancer,
      u.fallback,
      u.endpoints.map((e) => [e.id, e.address, e.port, e.weight, e.tags, e.state, e.transport, e.protocol]),
    ]),
  );
}
