// Turns DNS answers for one upstream into endpoints and a re-resolve delay: A/AAAA with a port, or SRV with priorities and weights.
import type { SrvData } from 'dns-packet';
import type { DnsUpstreamConfig } from '../../config/dns-schema.ts';
import { type Endpoint, makeEndpoint } from '../../upstream/endpoint.ts';
import type { DnsResponse, QueryType, Rr } from './dns-client.ts';

/** Asks one question (dns-client.ts `query` bound to the servers). */
export type Ask = (name: string, type: QueryType) => Promise<DnsResponse>;

/** An SRV target whose own A/AAAA lookup failed (its endpoints of the last answer were kept). */
export interface TargetFailure {
  /** The target name, without the trailing dot. */
  target: string;
  /** Why the lookup failed. */
  reason: string;
}

/** What one resolution yields: the endpoints (empty for NXDOMAIN / no records) and the smallest TTL seen, seconds. */
export interface Resolution {
  endpoints: Endpoint[];
  ttlSeconds: number;
  /** `NXDOMAIN` or `NOERROR`. */
  rcode: string;
  /** SRV: the priority that got the traffic. */
  priority?: number;
  /** SRV: targets of the priorities tried whose lookup failed (empty when none did). */
  targetFailures?: TargetFailure[];
}

/** Most SRV targets looked up at once (A and AAAA each): 20 slow targets cost 3 round trips, not 20. */
export const SRV_TARGET_CONCURRENCY = 8;

const byId = (a: Endpoint, b: Endpoint): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const sameName = (a: string, b: string): boolean =>
  a.replace(/\.$/, '').toLowerCase() === b.replace(/\.$/, '').toLowerCase();

/** The negative-caching TTL of an NXDOMAIN/NODATA answer: the SOA's minimum (RFC 2308), else 0. */
function negativeTtl(res: DnsResponse): number {
  const soa = res.authorities.find((a) => a.type === 'SOA') as
    (Rr & { data: { minimum: number } }) | undefined;
  return soa === undefined ? 0 : Math.min(soa.ttl ?? 0, soa.data.minimum);
}

/** Addresses of `name` among `records` (A and AAAA), following a CNAME chain inside the answer. */
function addressesIn(records: readonly Rr[], name: string): { addresses: string[]; ttl: number } {
  let target = name;
  let ttl = Infinity;
  for (let hops = 0; hops < 8; hops++) {
    const cname = records.find((r) => r.type === 'CNAME' && sameName(r.name, target));
    if (cname === undefined) break;
    ttl = Math.min(ttl, cname.ttl ?? 0);
    target = cname.data as string;
  }
  const addresses: string[] = [];
  for (const r of records) {
    if ((r.type === 'A' || r.type === 'AAAA') && sameName(r.name, target)) {
      addresses.push(r.data as string);
      ttl = Math.min(ttl, r.ttl ?? 0);
    }
  }
  return { addresses, ttl };
}

/**
 * A and AAAA of `name`, asked together. NXDOMAIN on either means no addresses. When one of the two
 * questions failed (a resolver that never answers AAAA, a SERVFAIL) the other's addresses are used;
 * it rejects when both failed, or when one failed and the other found no address (nothing tells
 * whether the failed family had some).
 */
async function resolveHost(
  ask: Ask,
  name: string,
): Promise<{ addresses: string[]; ttl: number; rcode: string }> {
  const [a, aaaa] = await Promise.allSettled([ask(name, 'A'), ask(name, 'AAAA')]);
  const answered = [a, aaaa].flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = [a, aaaa].flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
  if (answered.some((r) => r.rcode === 'NXDOMAIN')) {
    return { addresses: [], ttl: Math.min(...answered.map(negativeTtl)), rcode: 'NXDOMAIN' };
  }
  const v4 = a.status === 'fulfilled' ? addressesIn(a.value.answers, name) : { addresses: [], ttl: Infinity };
  const v6 =
    aaaa.status === 'fulfilled' ? addressesIn(aaaa.value.answers, name) : { addresses: [], ttl: Infinity };
  const addresses = [...v4.addresses, ...v6.addresses];
  if (failed.length > 0 && addresses.length === 0) throw failed[0]!;
  const ttl = addresses.length === 0 ? Math.min(...answered.map(negativeTtl)) : Math.min(v4.ttl, v6.ttl);
  return { addresses, ttl, rcode: 'NOERROR' };
}

/** Runs `task` on every item, at most `limit` at a time; resolves with the results in item order. */
async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

type TargetLookup = { addresses: string[]; ttl: number } | { error: Error };

/**
 * SRV (RFC 2782): targets grouped by priority; the lowest priority with at least one target that
 * resolves gets all the traffic (the others are standby). Within it, each address of a target is an
 * endpoint on the record's port with the record's weight; weight 0 targets are left out unless every
 * target of the priority has weight 0 (then all weigh 1); records with port 0 are left out. Target addresses come from the answer's
 * additional section when present (Kubernetes sends them), else from A/AAAA queries, each target once
 * and {@link SRV_TARGET_CONCURRENCY} at a time, so a slow or silent target costs one timeout, not one
 * per target after it. A target whose lookup fails keeps its endpoints of the last answer and is
 * reported in `targetFailures`. A target named `.` means "no service".
 */
async function resolveSrv(
  ask: Ask,
  name: string,
  transport: 'plain' | 'mtls',
  previous: readonly Endpoint[],
): Promise<Resolution> {
  const res = await ask(name, 'SRV');
  if (res.rcode === 'NXDOMAIN') return { endpoints: [], ttlSeconds: negativeTtl(res), rcode: 'NXDOMAIN' };
  const records = (res.answers.filter((r) => r.type === 'SRV') as (Rr & { data: SrvData })[]).filter(
    // Port 0 cannot be dialled: such a record says where nothing listens.
    (r) => Number.isInteger(r.data.port) && r.data.port > 0,
  );
  if (records.length === 0) return { endpoints: [], ttlSeconds: negativeTtl(res), rcode: 'NOERROR' };
  let ttl = Math.min(...records.map((r) => r.ttl ?? 0));
  const targetFailures: TargetFailure[] = [];
  const priorities = [...new Set(records.map((r) => r.data.priority ?? 0))].sort((x, y) => x - y);
  for (const priority of priorities) {
    const group = records.filter((r) => (r.data.priority ?? 0) === priority && r.data.target !== '.');
    const allZero = group.every((r) => (r.data.weight ?? 0) === 0);
    const used = group.filter((r) => (allZero ? 1 : (r.data.weight ?? 0)) > 0);
    // The targets the additional section does not resolve, each looked up once, concurrently.
    const toLookUp = [
      ...new Set(
        used
          .filter((r) => addressesIn(res.additionals, r.data.target).addresses.length === 0)
          .map((r) => r.data.target),
      ),
    ];
    const results = await mapBounded(toLookUp, SRV_TARGET_CONCURRENCY, (target) =>
      resolveHost(ask, target).then(
        (found): TargetLookup => found,
        (err: unknown): TargetLookup => ({ error: err as Error }),
      ),
    );
    const lookedUp = new Map(toLookUp.map((target, i) => [target, results[i]!]));
    let failure: Error | undefined;
    for (const [target, result] of lookedUp) {
      if (!('error' in result)) continue;
      failure ??= result.error;
      targetFailures.push({ target: target.replace(/\.$/, ''), reason: result.error.message });
    }
    const endpoints = new Map<string, Endpoint>();
    for (const r of used) {
      const weight = allZero ? 1 : (r.data.weight ?? 0);
      const result = lookedUp.get(r.data.target) ?? addressesIn(res.additionals, r.data.target);
      let found: { addresses: string[]; ttl: number };
      if ('error' in result) {
        // This target's lookup failed: its addresses of the last answer stay (none when new).
        const target = r.data.target.replace(/\.$/, '');
        const kept = previous.filter((e) => e.meta.dns_target === target && e.port === r.data.port);
        found = { addresses: kept.map((e) => e.address), ttl: Infinity };
      } else found = result;
      if (found.addresses.length > 0) ttl = Math.min(ttl, found.ttl);
      for (const address of found.addresses) {
        const e = makeEndpoint(address, r.data.port, {
          weight,
          transport,
          meta: { dns_target: r.data.target.replace(/\.$/, '') },
        });
        if (!endpoints.has(e.id)) endpoints.set(e.id, e);
      }
    }
    if (endpoints.size > 0) {
      const sorted = [...endpoints.values()].sort(byId);
      return { endpoints: sorted, ttlSeconds: ttl, rcode: 'NOERROR', priority, targetFailures };
    }
    // Nothing of this priority resolved, and a lookup failed: the standby priority is not proof
    // enough; the caller keeps its last answer and retries.
    if (failure !== undefined) throw failure;
  }
  return { endpoints: [], ttlSeconds: ttl, rcode: 'NOERROR', targetFailures };
}

/**
 * Resolves one upstream's name. Rejects when no server answered (the caller keeps the last answer).
 * `previous` is the upstream's last endpoints: an SRV target whose own lookup failed keeps its
 * endpoints from them.
 */
export async function resolveUpstream(
  ask: Ask,
  spec: DnsUpstreamConfig,
  previous: readonly Endpoint[] = [],
): Promise<Resolution> {
  if ('srv' in spec) return resolveSrv(ask, spec.srv, spec.transport, previous);
  const found = await resolveHost(ask, spec.host);
  return {
    // An address the answer repeats (a record twice, A through two CNAMEs) is one endpoint.
    endpoints: [...new Set(found.addresses)]
      .map((a) => makeEndpoint(a, spec.port, { transport: spec.transport }))
      .sort(byId),
    ttlSeconds: found.ttl === Infinity ? 0 : found.ttl,
    rcode: found.rcode,
  };
}

/** The delay before resolving again: the TTL clamped to [minTtl, maxTtl], ms. */
export function nextResolveMs(ttlSeconds: number, minTtlMs: number, maxTtlMs: number): number {
  const ms = Number.isFinite(ttlSeconds) ? ttlSeconds * 1000 : maxTtlMs;
  return Math.min(maxTtlMs, Math.max(minTtlMs, ms));
}

/** The delay after the `failures`-th failure in a row: minTtl doubling, at most maxTtl, ms. */
export function retryMs(failures: number, minTtlMs: number, maxTtlMs: number): number {
  return Math.min(maxTtlMs, minTtlMs * 2 ** Math.min(Math.max(0, failures - 1), 16));
}
