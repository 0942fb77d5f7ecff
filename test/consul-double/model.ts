// The double's records (nodes, service instances, checks, KV entries) and their Consul JSON shapes.
import { formatGoDuration } from './duration.ts';

/** A health status as Consul spells it. */
export type HealthStatus = 'passing' | 'warning' | 'critical';

/** Statuses a check may be set to over the API. */
export const HEALTH_STATUSES: readonly HealthStatus[] = ['passing', 'warning', 'critical'];

/** Raft bookkeeping kept on every stored record. */
export interface RaftIndex {
  createIndex: number;
  modifyIndex: number;
}

/** A catalog node (the agent's own node, or a peer node created by `addInstance`). */
export interface NodeRecord extends RaftIndex {
  id: string;
  name: string;
  address: string;
  datacenter: string;
  taggedAddresses: Record<string, string>;
  meta: Record<string, string>;
}

/** Service weights used by DNS and by clients' weighted balancing. */
export interface Weights {
  Passing: number;
  Warning: number;
}

/** One service instance in the catalog. `local` instances also show under `/v1/agent/services`. */
export interface ServiceRecord extends RaftIndex {
  node: string;
  local: boolean;
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
}

/** What a check probes and how often; the double runs TTL, HTTP and TCP checks. */
export interface CheckDefinition {
  ttlMs: number;
  intervalMs: number;
  timeoutMs: number;
  deregisterCriticalServiceAfterMs: number;
  http: string;
  method: string;
  header: Record<string, string[]> | null;
  body: string;
  tlsSkipVerify: boolean;
  tlsServerName: string;
  tcp: string;
  grpc: string;
  /** An alias check's service ID (local services only): its status is that service's aggregate. */
  aliasService: string;
}

/** A health check: node-level when `serviceId` is empty. */
export interface CheckRecord extends RaftIndex {
  node: string;
  local: boolean;
  checkId: string;
  name: string;
  status: HealthStatus;
  notes: string;
  output: string;
  serviceId: string;
  serviceName: string;
  serviceTags: string[];
  type: string;
  definition: CheckDefinition;
}

/** One KV entry; `value` is `null` for an entry written with an empty body. */
export interface KvRecord extends RaftIndex {
  key: string;
  value: Buffer | null;
  flags: number;
  lockIndex: number;
}

/** An empty check definition (node checks such as `serfHealth`). */
export function emptyDefinition(): CheckDefinition {
  return {
    ttlMs: 0,
    intervalMs: 0,
    timeoutMs: 0,
    deregisterCriticalServiceAfterMs: 0,
    http: '',
    method: '',
    header: null,
    body: '',
    tlsSkipVerify: false,
    tlsServerName: '',
    tcp: '',
    grpc: '',
    aliasService: '',
  };
}

/** `Definition` as Consul's `HealthCheckDefinition` marshals it: empty fields omitted. */
function renderDefinition(d: CheckDefinition): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (d.http !== '') out.HTTP = d.http;
  if (d.tlsServerName !== '') out.TLSServerName = d.tlsServerName;
  if (d.tlsSkipVerify) out.TLSSkipVerify = true;
  if (d.header !== null) out.Header = d.header;
  if (d.method !== '') out.Method = d.method;
  if (d.body !== '') out.Body = d.body;
  if (d.tcp !== '') out.TCP = d.tcp;
  if (d.grpc !== '') out.GRPC = d.grpc;
  if (d.intervalMs > 0) out.Interval = formatGoDuration(d.intervalMs);
  if (d.timeoutMs > 0) out.Timeout = formatGoDuration(d.timeoutMs);
  if (d.deregisterCriticalServiceAfterMs > 0) {
    out.DeregisterCriticalServiceAfter = formatGoDuration(d.deregisterCriticalServiceAfterMs);
  }
  if (d.ttlMs > 0) out.TTL = formatGoDuration(d.ttlMs);
  return out;
}

/** A check as `/v1/agent/checks`, `/v1/health/*` and the `Checks` of health entries show it. */
export function renderCheck(c: CheckRecord): Record<string, unknown> {
  return {
    Node: c.node,
    CheckID: c.checkId,
    Name: c.name,
    Status: c.status,
    Notes: c.notes,
    Output: c.output,
    ServiceID: c.serviceId,
    ServiceName: c.serviceName,
    ServiceTags: [...c.serviceTags],
    Type: c.type,
    Interval: c.definition.intervalMs > 0 ? formatGoDuration(c.definition.intervalMs) : '',
    Timeout: c.definition.timeoutMs > 0 ? formatGoDuration(c.definition.timeoutMs) : '',
    ExposedPort: 0,
    Definition: renderDefinition(c.definition),
    CreateIndex: c.createIndex,
    ModifyIndex: c.modifyIndex,
  };
}

/** A node as `/v1/catalog/nodes` and the `Node` of health entries show it. */
export function renderNode(n: NodeRecord): Record<string, unknown> {
  return {
    ID: n.id,
    Node: n.name,
    Address: n.address,
    Datacenter: n.datacenter,
    TaggedAddresses: { ...n.taggedAddresses },
    Meta: { ...n.meta },
    CreateIndex: n.createIndex,
    ModifyIndex: n.modifyIndex,
  };
}

function proxyOrDefault(s: ServiceRecord): Record<string, unknown> {
  return s.proxy ?? { Mode: '', MeshGateway: {}, Expose: {} };
}

/** A service as the agent shows it (`/v1/agent/services`, `/v1/agent/service/:id`). */
export function renderAgentService(s: ServiceRecord, datacenter: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (s.kind !== '') out.Kind = s.kind;
  out.ID = s.id;
  out.Service = s.name;
  out.Tags = [...s.tags];
  out.Meta = { ...s.meta };
  out.Port = s.port;
  out.Address = s.address;
  if (s.socketPath !== '') out.SocketPath = s.socketPath;
  if (s.taggedAddresses !== undefined) out.TaggedAddresses = s.taggedAddresses;
  out.Weights = { ...s.weights };
  out.EnableTagOverride = s.enableTagOverride;
  if (s.proxy !== undefined) out.Proxy = s.proxy;
  if (s.connect !== undefined) out.Connect = s.connect;
  out.Datacenter = datacenter;
  return out;
}

/** A service as the `Service` of `/v1/health/service/:name` entries shows it (a `NodeService`). */
export function renderNodeService(s: ServiceRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (s.kind !== '') out.Kind = s.kind;
  out.ID = s.id;
  out.Service = s.name;
  out.Tags = [...s.tags];
  out.Address = s.address;
  if (s.taggedAddresses !== undefined) out.TaggedAddresses = s.taggedAddresses;
  out.Meta = { ...s.meta };
  out.Port = s.port;
  if (s.socketPath !== '') out.SocketPath = s.socketPath;
  out.Weights = { ...s.weights };
  out.EnableTagOverride = s.enableTagOverride;
  out.Proxy = proxyOrDefault(s);
  out.Connect = s.connect ?? {};
  out.PeerName = '';
  out.CreateIndex = s.createIndex;
  out.ModifyIndex = s.modifyIndex;
  return out;
}

/** A service instance as `/v1/catalog/service/:name` shows it (a `ServiceNode`). */
export function renderCatalogService(s: ServiceRecord, n: NodeRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ID: n.id,
    Node: n.name,
    Address: n.address,
    Datacenter: n.datacenter,
    TaggedAddresses: { ...n.taggedAddresses },
    NodeMeta: { ...n.meta },
    ServiceKind: s.kind,
    ServiceID: s.id,
    ServiceName: s.name,
    ServiceTags: [...s.tags],
    ServiceAddress: s.address,
    ServiceWeights: { ...s.weights },
    ServiceMeta: { ...s.meta },
    ServicePort: s.port,
    ServiceEnableTagOverride: s.enableTagOverride,
    ServiceProxy: proxyOrDefault(s),
    ServiceConnect: s.connect ?? {},
    CreateIndex: s.createIndex,
    ModifyIndex: s.modifyIndex,
  };
  if (s.taggedAddresses !== undefined) out.ServiceTaggedAddresses = s.taggedAddresses;
  if (s.socketPath !== '') out.ServiceSocketPath = s.socketPath;
  return out;
}

/** A KV entry as `GET /v1/kv/:key` shows it (`Value` base64, `null` when empty). */
export function renderKv(e: KvRecord): Record<string, unknown> {
  return {
    LockIndex: e.lockIndex,
    Key: e.key,
    Flags: e.flags,
    Value: e.value === null || e.value.length === 0 ? null : e.value.toString('base64'),
    CreateIndex: e.createIndex,
    ModifyIndex: e.modifyIndex,
  };
}
