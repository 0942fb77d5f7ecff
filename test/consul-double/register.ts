// Decodes and validates service and check definitions the way the Consul agent's register endpoints do.
import { readDuration } from './duration.ts';
import {
  type CheckDefinition,
  emptyDefinition,
  HEALTH_STATUSES,
  type HealthStatus,
  type Weights,
} from './model.ts';

/** A request the agent rejects; `status` and `message` are what Consul answers (text/plain). */
export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** A check as given in a registration, before IDs and names are defaulted. */
export interface CheckSpec {
  checkId: string;
  name: string;
  notes: string;
  status: HealthStatus | '';
  serviceId: string;
  type: string;
  definition: CheckDefinition;
}

/** A service registration after decoding and validation. */
export interface ServiceSpec {
  id: string;
  name: string;
  kind: string;
  tags: string[];
  address: string;
  port: number;
  meta: Record<string, string>;
  weights: Weights;
  enableTagOverride: boolean;
  socketPath: string;
  taggedAddresses?: Record<string, unknown>;
  proxy?: Record<string, unknown>;
  connect?: Record<string, unknown>;
  checks: CheckSpec[];
}

type Fields = Map<string, unknown>;

/**
 * Field lookup as Consul decodes bodies: field names match case-insensitively (mapstructure) and the
 * snake_case spellings (`enable_tag_override`, `deregister_critical_service_after`) are accepted too.
 */
function fields(value: unknown, what: string): Fields {
  if (value === null || value === undefined) return new Map();
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new HttpError(400, `Request decode failed: ${what} must be an object`);
  }
  const out: Fields = new Map();
  for (const [k, v] of Object.entries(value)) out.set(k.toLowerCase().replaceAll('_', ''), v);
  return out;
}

function str(f: Fields, name: string, fallback = ''): string {
  const v = f.get(name);
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string') throw new HttpError(400, `Request decode failed: ${name} must be a string`);
  return v;
}

function num(f: Fields, name: string, fallback = 0): number {
  const v = f.get(name);
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new HttpError(400, `Request decode failed: ${name} must be an integer`);
  }
  return v;
}

function bool(f: Fields, name: string): boolean {
  const v = f.get(name);
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new HttpError(400, `Request decode failed: ${name} must be a boolean`);
  return v;
}

function strings(f: Fields, name: string): string[] {
  const v = f.get(name);
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
    throw new HttpError(400, `Request decode failed: ${name} must be a list of strings`);
  }
  return [...(v as string[])];
}

function stringMap(f: Fields, name: string): Record<string, string> {
  const v = f.get(name);
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
    throw new HttpError(400, `Request decode failed: ${name} must be a map of strings`);
  }
  return { ...(v as Record<string, string>) };
}

function objectOrUndefined(f: Fields, name: string): Record<string, unknown> | undefined {
  const v = f.get(name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) {
    throw new HttpError(400, `Request decode failed: ${name} must be an object`);
  }
  return v as Record<string, unknown>;
}

function duration(f: Fields, name: string): number {
  const v = f.get(name);
  const ms = readDuration(v);
  if (ms === undefined)
    throw new HttpError(400, `Request decode failed: time: invalid duration ${JSON.stringify(v)}`);
  return ms;
}

function headerMap(f: Fields): Record<string, string[]> | null {
  const v = f.get('header');
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v))
    throw new HttpError(400, 'Request decode failed: Header must be a map');
  const out: Record<string, string[]> = {};
  for (const [k, vals] of Object.entries(v)) {
    if (!Array.isArray(vals) || vals.some((x) => typeof x !== 'string')) {
      throw new HttpError(400, 'Request decode failed: Header values must be lists of strings');
    }
    out[k] = [...(vals as string[])];
  }
  return out;
}

/** Decodes one check (inside a service's `Check`/`Checks`, or a `/v1/agent/check/register` body). */
export function decodeCheck(raw: unknown, standalone: boolean): CheckSpec {
  const f = fields(raw, 'Check');
  const d = emptyDefinition();
  d.ttlMs = duration(f, 'ttl');
  d.intervalMs = duration(f, 'interval');
  d.timeoutMs = duration(f, 'timeout');
  d.deregisterCriticalServiceAfterMs = duration(f, 'deregistercriticalserviceafter');
  d.http = str(f, 'http');
  d.method = str(f, 'method');
  d.header = headerMap(f);
  d.body = str(f, 'body');
  d.tlsSkipVerify = bool(f, 'tlsskipverify');
  d.tlsServerName = str(f, 'tlsservername');
  d.tcp = str(f, 'tcp');
  d.grpc = str(f, 'grpc');
  d.aliasService = str(f, 'aliasservice');
  const scriptArgs = strings(f, 'args').length > 0 || strings(f, 'scriptargs').length > 0;
  const udp = str(f, 'udp');
  const h2ping = str(f, 'h2ping');
  const alias = str(f, 'aliasservice') !== '' || str(f, 'aliasnode') !== '';
  const docker = str(f, 'dockercontainerid') !== '';
  const status = str(f, 'status');

  const intervalCheck =
    scriptArgs || d.http !== '' || d.tcp !== '' || udp !== '' || d.grpc !== '' || h2ping !== '';
  const prefix = standalone ? '' : 'Invalid check: ';
  if (d.intervalMs > 0 && d.ttlMs > 0)
    throw new HttpError(400, `${prefix}Interval and TTL cannot both be specified`);
  if (intervalCheck && d.intervalMs <= 0) {
    throw new HttpError(400, `${prefix}Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks`);
  }
  if (!intervalCheck && !alias && d.ttlMs <= 0)
    throw new HttpError(400, `${prefix}TTL must be > 0 for TTL checks`);
  if (scriptArgs) {
    throw new HttpError(
      400,
      "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true",
    );
  }
  if (status !== '' && !HEALTH_STATUSES.includes(status as HealthStatus)) {
    throw new HttpError(
      400,
      standalone ? 'Bad check status' : "Status for checks must 'passing', 'warning', 'critical'",
    );
  }
  let type = 'ttl';
  if (d.http !== '') type = 'http';
  else if (d.tcp !== '') type = 'tcp';
  else if (d.grpc !== '') type = 'grpc';
  else if (udp !== '') type = 'udp';
  else if (h2ping !== '') type = 'h2ping';
  else if (alias) type = 'alias';
  else if (docker) type = 'docker';
  return {
    checkId: str(f, 'checkid') || str(f, 'id'),
    name: str(f, 'name'),
    notes: str(f, 'notes'),
    status: status as HealthStatus | '',
    serviceId: str(f, 'serviceid'),
    type,
    definition: d,
  };
}

const META_KEY = /^[a-zA-Z0-9_-]+$/;

function validateMeta(meta: Record<string, string>): void {
  const entries = Object.entries(meta);
  if (entries.length > 64) {
    throw new HttpError(
      400,
      'Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs',
    );
  }
  for (const [k, v] of entries) {
    if (k === '') throw new HttpError(400, 'Invalid Service Meta: Key cannot be blank');
    if (!META_KEY.test(k)) throw new HttpError(400, `Invalid Service Meta: Key contains invalid characters`);
    if (k.length > 128)
      throw new HttpError(400, 'Invalid Service Meta: Key is too long (limit: 128 characters)');
    if (k.startsWith('consul-')) {
      throw new HttpError(400, "Invalid Service Meta: Key prefix 'consul-' is reserved for internal use");
    }
    if (v.length > 512)
      throw new HttpError(400, 'Invalid Service Meta: Value is too long (limit: 512 characters)');
  }
}

/** Decodes a `PUT /v1/agent/service/register` body; throws `HttpError` with Consul's answer when invalid. */
export function decodeService(raw: unknown): ServiceSpec {
  const f = fields(raw, 'body');
  const name = str(f, 'name');
  if (name === '') throw new HttpError(400, 'Missing service name');
  const address = str(f, 'address');
  if (address === '0.0.0.0' || address === '::' || address === '[::]') {
    throw new HttpError(400, 'Invalid service address');
  }
  let weights: Weights = { Passing: 1, Warning: 1 };
  if (f.get('weights') !== undefined && f.get('weights') !== null) {
    const w = fields(f.get('weights'), 'Weights');
    weights = { Passing: num(w, 'passing'), Warning: num(w, 'warning') };
    if (weights.Passing < 1) throw new HttpError(400, 'Invalid Weights: Passing must be greater than 0');
    if (weights.Warning < 0)
      throw new HttpError(400, 'Invalid Weights: Warning must be greater or equal than 0');
  }
  const meta = stringMap(f, 'meta');
  validateMeta(meta);
  const port = num(f, 'port');
  if (port < 0 || port > 65535)
    throw new HttpError(400, 'Validation failed: Port must be between 0 and 65535');
  const checks: CheckSpec[] = [];
  const single = f.get('check');
  if (single !== undefined && single !== null && Object.keys(single as object).length > 0) {
    checks.push(decodeCheck(single, false));
  }
  const many = f.get('checks');
  if (many !== undefined && many !== null) {
    if (!Array.isArray(many)) throw new HttpError(400, 'Request decode failed: Checks must be a list');
    for (const c of many) checks.push(decodeCheck(c, false));
  }
  const spec: ServiceSpec = {
    id: str(f, 'id') || name,
    name,
    kind: str(f, 'kind'),
    tags: strings(f, 'tags'),
    address,
    port,
    meta,
    weights,
    enableTagOverride: bool(f, 'enabletagoverride'),
    socketPath: str(f, 'socketpath'),
    checks,
  };
  const tagged = objectOrUndefined(f, 'taggedaddresses');
  if (tagged !== undefined) spec.taggedAddresses = tagged;
  const proxy = objectOrUndefined(f, 'proxy');
  if (proxy !== undefined) spec.proxy = normalizeProxy(proxy);
  const connect = objectOrUndefined(f, 'connect');
  if (connect !== undefined) spec.connect = connect;
  if (spec.kind === 'connect-proxy') validateConnectProxy(spec);
  return spec;
}

/** `Proxy` as the agent stores and shows it: Consul's field names, defaults filled in. */
function normalizeProxy(raw: Record<string, unknown>): Record<string, unknown> {
  const f = fields(raw, 'Proxy');
  const out: Record<string, unknown> = {};
  const name = str(f, 'destinationservicename');
  if (name !== '') out.DestinationServiceName = name;
  const id = str(f, 'destinationserviceid');
  if (id !== '') out.DestinationServiceID = id;
  const lsa = str(f, 'localserviceaddress');
  if (lsa !== '') out.LocalServiceAddress = lsa;
  const lsp = num(f, 'localserviceport');
  if (lsp !== 0) out.LocalServicePort = lsp;
  out.Mode = str(f, 'mode');
  const config = objectOrUndefined(f, 'config');
  if (config !== undefined) out.Config = config;
  const ups = f.get('upstreams');
  if (ups !== undefined && ups !== null) {
    if (!Array.isArray(ups))
      throw new HttpError(400, 'Request decode failed: Proxy.Upstreams must be a list');
    out.Upstreams = ups.map((u) => normalizeUpstream(u));
  }
  out.MeshGateway = objectOrUndefined(f, 'meshgateway') ?? {};
  out.Expose = objectOrUndefined(f, 'expose') ?? {};
  return out;
}

function normalizeUpstream(raw: unknown): Record<string, unknown> {
  const f = fields(raw, 'Upstream');
  const out: Record<string, unknown> = { DestinationType: str(f, 'destinationtype') || 'service' };
  const ns = str(f, 'destinationnamespace');
  if (ns !== '') out.DestinationNamespace = ns;
  out.DestinationName = str(f, 'destinationname');
  const peer = str(f, 'destinationpeer');
  if (peer !== '') out.DestinationPeer = peer;
  out.Datacenter = str(f, 'datacenter');
  const addr = str(f, 'localbindaddress');
  if (addr !== '') out.LocalBindAddress = addr;
  const port = num(f, 'localbindport');
  if (port !== 0) out.LocalBindPort = port;
  const socket = str(f, 'localbindsocketpath');
  if (socket !== '') out.LocalBindSocketPath = socket;
  const config = objectOrUndefined(f, 'config');
  if (config !== undefined) out.Config = config;
  out.MeshGateway = objectOrUndefined(f, 'meshgateway') ?? {};
  return out;
}

/**
 * Consul's `NodeService.Validate` for `Kind: connect-proxy` (agent/structs): the destination service,
 * a port, and each upstream valid with its own local bind, no two upstreams alike nor on one bind
 * address. Answered as the agent does: 400 `Validation failed: ` and the multierror list.
 */
function validateConnectProxy(spec: ServiceSpec): void {
  const errors: string[] = [];
  const proxy = spec.proxy ?? {};
  if (String(proxy.DestinationServiceName ?? '').trim() === '') {
    errors.push('Proxy.DestinationServiceName must be non-empty for Connect proxy services');
  }
  if (spec.port === 0 && spec.socketPath === '')
    errors.push('Port or SocketPath must be set for a Connect proxy');
  if (spec.connect?.Native === true)
    errors.push('A Proxy cannot also be Connect Native, only typical services');
  const keys = new Set<string>();
  const binds = new Set<string>();
  for (const u of (proxy.Upstreams ?? []) as Record<string, unknown>[]) {
    const type = u.DestinationType as string;
    const name = u.DestinationName as string;
    const port = (u.LocalBindPort as number | undefined) ?? 0;
    const socket = (u.LocalBindSocketPath as string | undefined) ?? '';
    if (type !== 'service' && type !== 'prepared_query') {
      errors.push(`unknown upstream destination type: ${JSON.stringify(type)}`);
      continue;
    }
    if (name === '') {
      errors.push('upstream destination name cannot be empty');
      continue;
    }
    if (name === '*') {
      errors.push('upstream destination name cannot be a wildcard');
      continue;
    }
    if (u.DestinationPeer !== undefined && u.Datacenter !== '') {
      errors.push('upstream cannot specify both destination peer and datacenter');
      continue;
    }
    if (port === 0 && socket === '') {
      errors.push('upstream local bind port or local socket path must be defined and nonzero');
      continue;
    }
    if (port !== 0 && socket !== '') {
      errors.push('only one of upstream local bind port or local socket path can be defined and nonzero');
      continue;
    }
    const key = `[type=${JSON.stringify(type)}, name=${JSON.stringify(name)}, namespace="default", partition="default", datacenter=${JSON.stringify(u.Datacenter ?? '')}, peer=${JSON.stringify(u.DestinationPeer ?? '')}]`;
    if (keys.has(key)) {
      errors.push(`upstreams cannot contain duplicates of ${key}`);
      continue;
    }
    keys.add(key);
    const host = (u.LocalBindAddress as string | undefined) ?? '127.0.0.1';
    const addr = port > 0 ? `${host.includes(':') ? `[${host}]` : host}:${port}` : socket;
    if (binds.has(addr)) {
      errors.push(
        `upstreams cannot contain duplicates by local bind address and port or unix path; ${JSON.stringify(addr)} is specified twice`,
      );
      continue;
    }
    binds.add(addr);
  }
  if (errors.length === 0) return;
  const head = errors.length === 1 ? '1 error occurred:' : `${errors.length} errors occurred:`;
  throw new HttpError(400, `Validation failed: ${head}\n${errors.map((e) => `\t* ${e}`).join('\n')}\n\n`);
}

/** Decodes a `PUT /v1/agent/check/update/:id` body (`Status`, `Output`). */
export function decodeCheckUpdate(raw: unknown): { status: string; output: string } {
  const f = fields(raw, 'body');
  return { status: str(f, 'status'), output: str(f, 'output') };
}
