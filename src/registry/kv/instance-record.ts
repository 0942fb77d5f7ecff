// The JSON value etcd and redis hold per instance: what this meshlet writes and what discovery accepts from others.
import { hostname, networkInterfaces } from 'node:os';
import type { MeshletConfig } from '../../config/schema.ts';
import type { CheckStatus } from '../consul/app-probe.ts';
import { advertisedProtocol } from '../consul/health-endpoints.ts';
import { meshletVersion } from '../consul/meshlet-version.ts';
import { type Endpoint, makeEndpoint } from '../../upstream/endpoint.ts';
import { isoTime } from '../../telemetry/utc-time.ts';

/**
 * One instance's value (JSON). `address`, `port` required; `weight` default 1; `status` default
 * `passing` (`critical` instances get no traffic); `meta.meshlet_inbound: mtls` means the port is
 * the instance meshlet's mTLS inbound listener, as in Consul; `protocol` is what it speaks.
 */
export interface InstanceRecord {
  id: string;
  service: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  weight: number;
  protocol: string;
  status: CheckStatus;
  /** The probe's output (what Consul shows as the check output). */
  output: string;
  /** When meshlet wrote it (ISO 8601). */
  updatedAt: string;
}

/** What this meshlet registers, resolved from `service` and the registry section. */
export interface InstanceSpec {
  /** The configured ID (the one written unless another instance holds it). */
  id: string;
  /** True when `registry.serviceId` set `id` (never replaced by a distinct ID). */
  explicitId: boolean;
  service: string;
  address: string;
  port: number;
  tags: readonly string[];
  meta: Readonly<Record<string, string>>;
  protocol: string;
  weights: { passing: number; warning: number };
}

type ServiceConfig = NonNullable<MeshletConfig['service']>;

/** The first non-internal IPv4 address of this host, or 127.0.0.1 (as the Consul registry picks it). */
function firstIPv4(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const ni of list ?? []) if (ni.family === 'IPv4' && !ni.internal) return ni.address;
  }
  return '127.0.0.1';
}

/**
 * The instance from config, as Consul's registration resolves it: id
 * `<service>-<hostname>-<port>` unless `serviceId`; the mTLS inbound port when it runs
 * (`meta.meshlet_inbound: mtls`), else the app's port (`plain`).
 */
export function instanceSpec(
  service: ServiceConfig,
  registry: { serviceId?: string | undefined; weights: { passing: number; warning: number } },
  inboundPort?: number,
): InstanceSpec {
  return {
    id: registry.serviceId ?? `${service.name}-${hostname()}-${service.port}`,
    explicitId: registry.serviceId !== undefined,
    service: service.name,
    address: service.address ?? firstIPv4(),
    port: inboundPort ?? service.port,
    tags: service.tags,
    meta: {
      ...service.meta,
      meshlet_version: meshletVersion(),
      meshlet_inbound: inboundPort === undefined ? 'plain' : 'mtls',
      meshlet_protocol: service.protocol,
    },
    protocol: service.protocol,
    weights: registry.weights,
  };
}

/** The record for `spec` with the app's current status. */
export function buildRecord(spec: InstanceSpec, status: CheckStatus, output: string): InstanceRecord {
  return {
    id: spec.id,
    service: spec.service,
    address: spec.address,
    port: spec.port,
    tags: [...spec.tags],
    meta: { ...spec.meta },
    weight: status === 'warning' ? spec.weights.warning : spec.weights.passing,
    protocol: spec.protocol,
    status,
    output: output.slice(0, 512),
    updatedAt: isoTime(Date.now()),
  };
}

const isStringRecord = (v: unknown): v is Record<string, string> =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  Object.values(v).every((x) => typeof x === 'string');

/** A parsed value: the instance's address and port, its endpoint (undefined for a critical instance), or why it was refused. */
export type ParsedRecord =
  { address: string; port: number; endpoint: Endpoint | undefined } | { invalid: string };

/** Largest record value read, bytes (64 KiB); a longer one is refused without being read whole where the store allows. */
export const MAX_RECORD_BYTES = 65_536;

/** Parses one stored value (at most 64 KiB of JSON) into an endpoint; never throws. */
export function parseRecord(value: string): ParsedRecord {
  if (value.length > MAX_RECORD_BYTES) return { invalid: 'value larger than 64 KiB' };
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return { invalid: 'not JSON' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { invalid: 'not a JSON object' };
  const r = v as Record<string, unknown>;
  if (typeof r.address !== 'string' || r.address === '')
    return { invalid: 'address: expected a non-empty string' };
  if (!Number.isInteger(r.port) || (r.port as number) < 1 || (r.port as number) > 65535) {
    return { invalid: 'port: expected an integer in 1..65535' };
  }
  const weight = r.weight ?? 1;
  if (!Number.isInteger(weight) || (weight as number) < 0)
    return { invalid: 'weight: expected an integer ≥ 0' };
  const tags = r.tags ?? [];
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) {
    return { invalid: 'tags: expected an array of strings' };
  }
  const meta = r.meta ?? {};
  if (!isStringRecord(meta)) return { invalid: 'meta: expected an object of strings' };
  const status = r.status ?? 'passing';
  if (status !== 'passing' && status !== 'warning' && status !== 'critical') {
    return { invalid: 'status: expected passing, warning or critical' };
  }
  if (r.protocol !== undefined && typeof r.protocol !== 'string')
    return { invalid: 'protocol: expected a string' };
  const at = { address: r.address, port: r.port as number };
  if (status === 'critical' || weight === 0) return { ...at, endpoint: undefined };
  return {
    ...at,
    endpoint: makeEndpoint(r.address, r.port as number, {
      weight: weight as number,
      tags: tags as string[],
      meta,
      transport: meta.meshlet_inbound === 'mtls' ? 'mtls' : 'plain',
      protocol: advertisedProtocol((r.protocol as string | undefined) ?? meta.meshlet_protocol),
    }),
  };
}
