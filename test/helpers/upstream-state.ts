// Reads one upstream's state from meshlet's admin API (GET /upstreams) for tests: health, breaker, ejections.
import { request } from 'undici';

/** How long one read may take, ms. */
const READ_TIMEOUT_MS = 5000;

/** One endpoint of an upstream as GET /upstreams shows it (the fields tests read). */
export interface EndpointState {
  id: string;
  address: string;
  port: number;
  state: 'healthy' | 'ejected';
  /** Requests in flight to it. */
  active: number;
}

/** One upstream as GET /upstreams shows it (the fields tests read). */
export interface UpstreamState {
  loadBalancer: string;
  synced: boolean;
  /** Endpoints not ejected. */
  healthy: number;
  total: number;
  endpoints: EndpointState[];
  /** `closed`, `open`, `half_open` or `disabled`. */
  circuitBreaker: string;
  outlierDetection: { ejectionsActive: number; panic: boolean };
}

/**
 * The state of upstream `name` from GET /upstreams on `admin` (`http://127.0.0.1:PORT` of the admin
 * listener). Throws unless it answers 200 within 5 s and lists `name`.
 */
export async function upstreamState(admin: string, name: string): Promise<UpstreamState> {
  const res = await request(`${admin}/upstreams`, { signal: AbortSignal.timeout(READ_TIMEOUT_MS) });
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new Error(`GET ${admin}/upstreams answered ${res.statusCode}, not 200`);
  }
  const body = (await res.body.json()) as { upstreams: Record<string, UpstreamState> };
  const state = body.upstreams[name];
  if (state === undefined) throw new Error(`GET ${admin}/upstreams lists no upstream ${name}`);
  return state;
}
