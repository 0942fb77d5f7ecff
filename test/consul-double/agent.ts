// The agent's behaviour on top of the store: its node, local services and checks, and peer instances.
import { CheckRunner } from './check-runner.ts';
import type { CheckRecord, HealthStatus, NodeRecord, ServiceRecord, Weights } from './model.ts';
import { emptyDefinition } from './model.ts';
import { type CheckSpec, HttpError, type ServiceSpec } from './register.ts';
import { Store, uuidFrom } from './store.ts';

/** The Consul version the double reports (node meta, `/v1/agent/self`). */
export const CONSUL_VERSION = '1.21.2';

/** Identity of the emulated agent. */
export interface AgentIdentity {
  datacenter: string;
  nodeName: string;
  /** The node's address (default 127.0.0.1). */
  address: string;
  /** Whether the catalog holds the server's own `consul` service, as on a real server agent. */
  consulService: boolean;
  /** Lower bound on HTTP/TCP check intervals (Consul: 1 s). */
  minCheckIntervalMs: number;
}

/** A peer instance registered straight into the catalog (as if by another node's agent). */
export interface InstanceSpec {
  service: string;
  /** Service ID; default `<service>-<address>-<port>`. */
  id?: string;
  address?: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
  weights?: Weights;
  /** Status of its `service:<id>` check; default `passing`. */
  status?: HealthStatus;
  /** Node name; default `node-<address with dots as dashes>` (one node per address). */
  node?: string;
  kind?: string;
}

/**
 * A TTL check's state as Consul writes it to `<data-dir>/checks/state` at each TTL update
 * (`persistCheckState`): the status and output set, and when that state expires, in whole Unix
 * seconds (`time.Now().Add(check.TTL).Unix()`).
 */
interface PersistedTtlState {
  status: HealthStatus;
  output: string;
  expiresS: number;
}

/** Emulates one Consul agent (also acting as the single server of its datacenter). */
export class Agent {
  readonly store = new Store();
  readonly runner: CheckRunner;
  readonly identity: AgentIdentity;
  /** Local TTL checks' persisted state, by check ID: written by {@link updateTtlCheck}, read by {@link restore}. */
  readonly #ttlState = new Map<string, PersistedTtlState>();

  constructor(identity: AgentIdentity) {
    this.identity = identity;
    this.runner = new CheckRunner(this.store, {
      minIntervalMs: identity.minCheckIntervalMs,
      reap: (serviceId) => {
        this.deregisterService(serviceId);
      },
    });
    this.bootstrap();
  }

  /** Registers the agent's node with its `serfHealth` check, and the `consul` service. */
  bootstrap(): void {
    const { nodeName, address } = this.identity;
    this.store.write(() => {
      this.#ensureNode(nodeName, address);
    });
    if (this.identity.consulService) {
      this.store.write(() => {
        this.store.putService({
          node: nodeName,
          local: false,
          id: 'consul',
          name: 'consul',
          kind: '',
          tags: [],
          address: '',
          port: 8300,
          meta: {
            non_voter: 'false',
            raft_version: '3',
            read_replica: 'false',
            serf_protocol_current: '2',
            serf_protocol_max: '5',
            serf_protocol_min: '1',
            version: CONSUL_VERSION,
          },
          weights: { Passing: 1, Warning: 1 },
          enableTagOverride: false,
          socketPath: '',
        });
      });
    }
  }

  /** Creates a node and its passing `serfHealth` check when missing. Call inside a store write. */
  #ensureNode(name: string, address: string): NodeRecord {
    const existing = this.store.nodes.get(name);
    if (existing !== undefined) return existing;
    const node = this.store.putNode({
      id: uuidFrom(`node:${name}`),
      name,
      address,
      datacenter: this.identity.datacenter,
      taggedAddresses: { lan: address, lan_ipv4: address, wan: address, wan_ipv4: address },
      meta: { 'consul-network-segment': '', 'consul-version': CONSUL_VERSION },
    });
    this.store.putCheck({
      node: name,
      local: false,
      checkId: 'serfHealth',
      name: 'Serf Health Status',
      status: 'passing',
      notes: '',
      output: 'Agent alive and reachable',
      serviceId: '',
      serviceName: '',
      serviceTags: [],
      type: '',
      definition: emptyDefinition(),
    });
    return node;
  }

  /**
   * Registers (or replaces) a local service and its checks, like `PUT /v1/agent/service/register`.
   * Checks that already exist keep their status and output; `replaceExistingChecks` removes the
   * service's other checks.
   */
  registerService(spec: ServiceSpec, replaceExistingChecks: boolean): ServiceRecord {
    const node = this.identity.nodeName;
    const checks: CheckRecord[] = spec.checks.map((c, i) => {
      let checkId = c.checkId;
      if (checkId === '') {
        checkId = `service:${spec.id}`;
        if (spec.checks.length > 1) checkId += `:${i + 1}`;
      }
      const prev = this.store.getCheck(node, checkId);
      return {
        node,
        local: true,
        checkId,
        name: c.name === '' ? `Service '${spec.name}' check` : c.name,
        status: prev?.status ?? (c.status === '' ? 'critical' : c.status),
        notes: c.notes,
        output: prev?.output ?? '',
        serviceId: spec.id,
        serviceName: spec.name,
        serviceTags: [...spec.tags],
        type: c.type,
        definition: c.definition,
        createIndex: 0,
        modifyIndex: 0,
      };
    });
    const { checks: _drop, ...fields } = spec;
    const stored = this.store.write(() => {
      const svc = this.store.putService({ ...fields, node, local: true });
      for (const c of checks) this.store.putCheck(c);
      if (replaceExistingChecks) {
        const keep = new Set(checks.map((c) => c.checkId));
        for (const c of [...this.store.checks.values()]) {
          if (c.node === node && c.serviceId === spec.id && !keep.has(c.checkId)) {
            this.runner.stop(c);
            this.store.deleteCheck(node, c.checkId);
          }
        }
      }
      return svc;
    });
    for (const c of checks) this.runner.start(this.store.getCheck(node, c.checkId)!);
    return stored;
  }

  /** Removes a local service and its checks. Returns false when it is not registered here. */
  deregisterService(id: string): boolean {
    const node = this.identity.nodeName;
    const svc = this.store.getService(node, id);
    if (svc === undefined || !svc.local) return false;
    for (const c of this.store.checks.values())
      if (c.node === node && c.serviceId === id) {
        this.runner.stop(c);
        this.#ttlState.delete(c.checkId);
      }
    this.store.write(() => this.store.deleteService(node, id));
    return true;
  }

  /** Registers a local check, like `PUT /v1/agent/check/register`. */
  registerCheck(spec: CheckSpec): CheckRecord {
    const node = this.identity.nodeName;
    if (spec.name === '') throw new HttpError(400, 'Missing check name');
    let svc: ServiceRecord | undefined;
    if (spec.serviceId !== '') {
      svc = this.store.getService(node, spec.serviceId);
      if (svc === undefined || !svc.local) {
        throw new HttpError(404, `ServiceID ${JSON.stringify(spec.serviceId)} does not exist`);
      }
    }
    const checkId = spec.checkId === '' ? spec.name : spec.checkId;
    const prev = this.store.getCheck(node, checkId);
    const rec = this.store.write(() =>
      this.store.putCheck({
        node,
        local: true,
        checkId,
        name: spec.name,
        status: prev?.status ?? (spec.status === '' ? 'critical' : spec.status),
        notes: spec.notes,
        output: prev?.output ?? '',
        serviceId: svc?.id ?? '',
        serviceName: svc?.name ?? '',
        serviceTags: svc === undefined ? [] : [...svc.tags],
        type: spec.type,
        definition: spec.definition,
      }),
    );
    this.runner.start(rec);
    return rec;
  }

  /** A local check by ID, or Consul's 404 for an unknown one. */
  localCheck(checkId: string): CheckRecord {
    const c = this.store.getCheck(this.identity.nodeName, checkId);
    if (c === undefined || !c.local) {
      throw new HttpError(
        404,
        `Unknown check ID ${JSON.stringify(checkId)}. Ensure that the check ID is passed, not the check name.`,
      );
    }
    return c;
  }

  /** Removes a local check; 404 when unknown. */
  deregisterCheck(checkId: string): void {
    const c = this.localCheck(checkId);
    this.runner.stop(c);
    this.#ttlState.delete(c.checkId);
    this.store.write(() => this.store.deleteCheck(c.node, c.checkId));
  }

  /** Updates a TTL check, like `/v1/agent/check/pass|warn|fail|update`. */
  updateTtlCheck(checkId: string, status: HealthStatus, output: string): CheckRecord {
    const c = this.localCheck(checkId);
    if (c.definition.ttlMs <= 0) {
      throw new HttpError(500, `CheckID ${JSON.stringify(checkId)} does not have associated TTL`);
    }
    const rec = this.runner.setStatus(c, status, output);
    // Consul's updateTTLCheck: persisted so the check can come up in the same state after a restart.
    this.#ttlState.set(checkId, {
      status,
      output: rec.output,
      expiresS: Math.floor((Date.now() + c.definition.ttlMs) / 1000),
    });
    return rec;
  }

  /** Adds a peer instance to the catalog on its own node, with a `service:<id>` check. */
  addInstance(spec: InstanceSpec): ServiceRecord {
    const address = spec.address ?? '127.0.0.1';
    const id = spec.id ?? `${spec.service}-${address}-${spec.port}`;
    const node = spec.node ?? `node-${address.replaceAll(/[.:]/g, '-')}`;
    const tags = [...(spec.tags ?? [])];
    return this.store.write(() => {
      this.#ensureNode(node, address);
      const svc = this.store.putService({
        node,
        local: node === this.identity.nodeName,
        id,
        name: spec.service,
        kind: spec.kind ?? '',
        tags,
        address,
        port: spec.port,
        meta: { ...(spec.meta ?? {}) },
        weights: spec.weights ?? { Passing: 1, Warning: 1 },
        enableTagOverride: false,
        socketPath: '',
      });
      this.store.putCheck({
        node,
        local: node === this.identity.nodeName,
        checkId: `service:${id}`,
        name: `Service '${spec.service}' check`,
        status: spec.status ?? 'passing',
        notes: '',
        output: '',
        serviceId: id,
        serviceName: spec.service,
        serviceTags: tags,
        type: '',
        definition: emptyDefinition(),
      });
      return svc;
    });
  }

  /** Removes an instance (peer or local) by service ID from any node. Returns false if absent. */
  removeInstance(id: string): boolean {
    const svc = [...this.store.services.values()].find((s) => s.id === id);
    if (svc === undefined) return false;
    for (const c of this.store.checks.values())
      if (c.node === svc.node && c.serviceId === id) {
        this.runner.stop(c);
        if (svc.node === this.identity.nodeName) this.#ttlState.delete(c.checkId);
      }
    this.store.write(() => this.store.deleteService(svc.node, id));
    return true;
  }

  /** Sets any check's status (by check ID, on any node; `node` narrows it). Returns false if absent. */
  setCheckStatus(checkId: string, status: HealthStatus, output?: string, node?: string): boolean {
    const c = [...this.store.checks.values()].find(
      (x) => x.checkId === checkId && (node === undefined || x.node === node),
    );
    if (c === undefined) return false;
    this.runner.setStatus(c, status, output ?? c.output);
    return true;
  }

  /** Forgets every record, KV entry and index, then re-registers the node (an agent restart without state). */
  restart(): void {
    this.runner.stopAll();
    this.#ttlState.clear();
    this.store.clear();
    this.bootstrap();
  }

  /** The agent process stops (for a restart with its data directory): no check runs, no TTL expires, until {@link restore}. */
  halt(): void {
    this.runner.stopAll();
  }

  /**
   * The agent starts again from its data directory, as Consul's `loadServices`, `loadChecks` and
   * `addCheckLocked` do. The catalog and KV (raft state) are as they were; the local services and
   * their checks are registered again from disk, each check critical ("to avoid placing potentially
   * unhealthy services into the active pool") with no output (an API registration carries none),
   * except a TTL check whose persisted state has not expired (`loadCheckState`: now, in Unix
   * seconds, before the state's expiry): that state's status and output. Every TTL check then starts
   * a full TTL from now (`CheckTTL.Start`); an expired state is purged. HTTP and TCP checks probe again.
   */
  restore(): void {
    const node = this.identity.nodeName;
    const nowS = Math.floor(Date.now() / 1000);
    const local = [...this.store.checks.values()].filter((c) => c.node === node && c.local);
    for (const c of local) {
      let status: HealthStatus = 'critical';
      let output = '';
      const state = this.#ttlState.get(c.checkId);
      if (c.definition.ttlMs > 0 && state !== undefined) {
        if (nowS < state.expiresS) ({ status, output } = state);
        else this.#ttlState.delete(c.checkId);
      }
      const rec = this.store.write(() => this.store.putCheck({ ...c, status, output }));
      this.runner.start(rec);
    }
  }
}
