// Turns a `/v1/health/service/<name>` answer into an immutable endpoint snapshot.
import { type Endpoint, type EndpointProtocol, makeEndpoint } from '../../upstream/endpoint.ts';
import type { HealthEntry } from './consul-client.ts';

const PROTOCOLS: ReadonlySet<string> = new Set<EndpointProtocol>(['http1', 'http2', 'grpc']);

/**
 * A peer's `Meta.meshlet_protocol` as an endpoint protocol: `http1`, `http2` or `grpc`; anything else
 * (absent, or a value this meshlet does not know, such as a newer meshlet's) is undefined, so the
 * upstream's `protocol` applies.
 */
export function advertisedProtocol(value: string | undefined): EndpointProtocol | undefined {
  return value !== undefined && PROTOCOLS.has(value) ? (value as EndpointProtocol) : undefined;
}

/**
 * One endpoint per instance: address = `Service.Address`, else `Node.Address`; weight =
 * `Weights.Passing` (`Weights.Warning` for an instance with a warning check, when the query lets
 * those through); instances weighted 0 are left out. Transport is `mtls` when the instance's meshlet
 * says so in `Meta.meshlet_inbound`, else `plain`. Protocol is `Meta.meshlet_protocol` when it is
 * one meshlet knows (`advertisedProtocol`), else undefined. Sorted by id, so equal answers give equal
 * snapshots.
 */
export function endpointsFromHealth(entries: readonly HealthEntry[]): Endpoint[] {
  const byId = new Map<string, Endpoint>();
  for (const entry of entries) {
    const s = entry.Service;
    const address = s.Address !== '' ? s.Address : entry.Node.Address;
    if (address === '' || !(s.Port > 0)) continue;
    const warning = (entry.Checks ?? []).some((c) => c.Status === 'warning');
    const weight = (warning ? s.Weights?.Warning : s.Weights?.Passing) ?? 1;
    if (weight <= 0) continue;
    const meta = s.Meta ?? {};
    const endpoint = makeEndpoint(address, s.Port, {
      weight,
      tags: s.Tags ?? [],
      meta,
      transport: meta.meshlet_inbound === 'mtls' ? 'mtls' : 'plain',
      protocol: advertisedProtocol(meta.meshlet_protocol),
    });
    if (!byId.has(endpoint.id)) byId.set(endpoint.id, endpoint);
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
