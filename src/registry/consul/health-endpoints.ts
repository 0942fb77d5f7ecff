// Turns a `/v1/health/service/<name>` answer into an immutable endpoint snapshot.
import { type Endpoint, type EndpointProtocol, makeEndpoint } from '../../upstream/endpoint.ts';

const PROTOCOLS: ReadonlySet<string> = new Set<EndpointProtocol>(['http1', 'http2', 'grpc']);

/**
 * A peer's `Meta.meshlet_protocol` as an endpoint protocol: `http1`, `http2` or `grpc`; anything else
 * (absent, or a value this meshlet does not know, such as a newer meshlet's) is undefined, so the
 * upstream's `protocol` applies.
 */
export function advertisedProtocol(value: string | undefined): EndpointProtocol | undefined {
  return value !== undefined && PROTOCOLS.has(value) ? (value as EndpointProtocol) : undefined;
}

/** What {@link parseHealth} makes of one health answer. */
export interface ParsedHealth {
  /** The usable instances, as endpoints sorted by id. */
  endpoints: Endpoint[];
  /**
   * Entries of the wrong shape, skipped: not an object, no `Service` object, a `Service.Port` that is
   * not an integer in 0..65535, no address at all (Consul always sends `Node.Address`).
   */
  malformed: number;
  /** Why the first malformed entry was refused (null when none was). */
  firstProblem: string | null;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The string-valued fields of a `Meta` object (others dropped); `{}` for anything not an object. */
function stringMap(v: unknown): Record<string, string> {
  if (!isObject(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

/** Why an entry is malformed, or undefined for a well-formed one (usable or not). */
function problemOf(entry: unknown): string | undefined {
  if (!isObject(entry)) return 'entry is not a JSON object';
  const s = entry.Service;
  if (!isObject(s)) return 'entry has no Service object';
  if (s.Address !== undefined && s.Address !== null && typeof s.Address !== 'string')
    return 'Service.Address is not a string';
  const port = s.Port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)
    return `Service.Port ${JSON.stringify(port)?.slice(0, 32) ?? 'undefined'} is not an integer in 0..65535`;
  return undefined;
}

/** A weight from `Weights`: a finite number ≥ 0, else 1 (Consul's default). */
function weightOf(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 1;
}

/**
 * One endpoint per instance: address = `Service.Address`, else `Node.Address`; weight =
 * `Weights.Passing` (`Weights.Warning` for an instance with a warning check, when the query lets
 * those through); instances weighted 0 or with port 0 (registered without a port) are left out. Transport is `mtls` when the instance's meshlet says so in `Meta.meshlet_inbound`,
 * else `plain`. Protocol is `Meta.meshlet_protocol` when it is one meshlet knows
 * (`advertisedProtocol`), else undefined. Sorted by id, so equal answers give equal snapshots.
 * Entries of the wrong shape are skipped and counted (never thrown on): tags that are not strings
 * and meta values that are not strings are dropped.
 */
export function parseHealth(entries: readonly unknown[]): ParsedHealth {
  const byId = new Map<string, Endpoint>();
  let malformed = 0;
  let firstProblem: string | null = null;
  for (const raw of entries) {
    const problem = problemOf(raw);
    if (problem !== undefined) {
      malformed++;
      firstProblem ??= problem;
      continue;
    }
    const entry = raw as Record<string, unknown>;
    const s = entry.Service as Record<string, unknown>;
    const node = isObject(entry.Node) ? entry.Node : {};
    const nodeAddress = typeof node.Address === 'string' ? node.Address : '';
    const address = typeof s.Address === 'string' && s.Address !== '' ? s.Address : nodeAddress;
    if (address === '') {
      malformed++;
      firstProblem ??= 'entry has neither Service.Address nor Node.Address';
      continue;
    }
    const port = s.Port as number;
    if (port === 0) continue;
    const checks = Array.isArray(entry.Checks) ? entry.Checks : [];
    const warning = checks.some((c) => isObject(c) && c.Status === 'warning');
    const weights = isObject(s.Weights) ? s.Weights : {};
    const weight = weightOf(warning ? weights.Warning : weights.Passing);
    if (weight <= 0) continue;
    const meta = stringMap(s.Meta);
    const tags = Array.isArray(s.Tags) ? s.Tags.filter((t): t is string => typeof t === 'string') : [];
    const endpoint = makeEndpoint(address, port, {
      weight,
      tags,
      meta,
      transport: meta.meshlet_inbound === 'mtls' ? 'mtls' : 'plain',
      protocol: advertisedProtocol(meta.meshlet_protocol),
    });
    if (!byId.has(endpoint.id)) byId.set(endpoint.id, endpoint);
  }
  const endpoints = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { endpoints, malformed, firstProblem };
}

/** The endpoints of a health answer ({@link parseHealth} without the malformed count). */
export function endpointsFromHealth(entries: readonly unknown[]): Endpoint[] {
  return parseHealth(entries).endpoints;
}
