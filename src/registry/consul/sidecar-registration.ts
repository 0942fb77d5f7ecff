// Registers the instance's sidecar proxy (Kind connect-proxy) in Consul, with a truthful local bind for each upstream.
import type { Logger } from '../../telemetry/logger.ts';
import type { CheckStatus } from './app-probe.ts';
import { type ConsulClient, ConsulHttpError } from './consul-client.ts';
import type { ConsulMetrics } from './consul-metrics.ts';
import { registrationLost } from './app-registration.ts';
import { holderOf } from './service-id-claim.ts';

/** Binds a per-upstream listener on 127.0.0.1:port; resolves with the bound port, rejects (EADDRINUSE, …) otherwise. */
export type OpenUpstreamListener = (upstream: string, port: number) => Promise<number>;

/** What the sidecar registration is built from, resolved from config. */
export interface SidecarSpec {
  /** The parent service's configured ID (the proxy follows the ID it is registered under) and its name. */
  serviceId: string;
  service: string;
  address: string;
  /** The proxy's public port: meshlet's mTLS inbound listener. */
  port: number;
  tags: readonly string[];
  meta: Readonly<Record<string, string>>;
  /** The local app (`service.port`), which the inbound listener forwards to. */
  localServicePort: number;
  /** `Proxy.Config.protocol`: `http`, `http2` or `grpc`. */
  protocol: 'http' | 'http2' | 'grpc';
  /** TTL of the sidecar's own check, ms (the service's). */
  ttlMs: number;
  deregisterCriticalServiceAfterMs: number;
  /** Ports config gives (`upstreams.NAME.port`); the daemon binds those itself. */
  configuredPorts: ReadonlyMap<string, number>;
  /** Range for automatic per-upstream ports, inclusive. */
  portRange: { from: number; to: number };
  maxUpstreams: number;
  debounceMs: number;
  /** An upstream's datacenter when its discovery filter names one. */
  datacenterOf(upstream: string): string | undefined;
}

/** meshlet's service.protocol as Consul's `Proxy.Config.protocol` (what `service-defaults` uses). */
export function consulProtocol(protocol: string): 'http' | 'http2' | 'grpc' {
  return protocol === 'grpc' ? 'grpc' : protocol === 'http2' ? 'http2' : 'http';
}

/**
 * The sidecar proxy's registration, `<service-id>-sidecar-proxy`. Every upstream it lists has a
 * local bind the app can really use: its per-upstream listener on 127.0.0.1, on the port config
 * names, else the first free port of `portRange` (bound here through `open`). An upstream that
 * could not get a port (range used up, `maxUpstreams` reached) is left out with a warning, so
 * Consul's validation (a bind per upstream, no two on one address and port) always holds.
 *
 * Lifecycle follows the service's: registered right after it (and again whenever it is), its TTL
 * check refreshed on the service's ticks (a 404 means the agent forgot it: registered again),
 * critical for the drain, deregistered before the service. When the service moves to another ID,
 * the proxy is registered under the new one before its old registration goes. On-demand upstreams
 * are added by re-registering, coalesced over `debounceMs`.
 */
export class SidecarRegistration {
  readonly spec: SidecarSpec;
  readonly name: string;
  /** The parent service's ID as registered. */
  #serviceId: string;
  readonly #client: ConsulClient;
  readonly #logger: Logger;
  readonly #open: OpenUpstreamListener | undefined;
  readonly #metrics: ConsulMetrics | undefined;
  /** The reason of the last failed registration (logged once), null after a success. */
  #lastFailure: string | null = null;
  /** Upstream → its local bind port, in the order they were added. */
  readonly #binds = new Map<string, number>();
  /** Upstreams being bound right now. */
  readonly #binding = new Map<string, Promise<void>>();
  readonly #usedPorts = new Set<number>();
  #nextPort: number;
  #registered = false;
  /** A registration was sent since the last deregistration (answered or not): shutdown deregisters it. */
  #sent = false;
  /** Aborted at shutdown: calls in flight give up, so the drain's own calls go at once. */
  readonly #shutdown = new AbortController();
  #stopped = false;
  #debounce: NodeJS.Timeout | null = null;
  #chain: Promise<void> = Promise.resolve();
  #fullLogged = false;
  /** The proxy's IDs under earlier service IDs, still to deregister once it is registered under the current one. */
  readonly #stale = new Set<string>();

  constructor(
    spec: SidecarSpec,
    deps: {
      client: ConsulClient;
      logger: Logger;
      openUpstreamListener?: OpenUpstreamListener | undefined;
      /** Counts failed registrations in `_errors_total{operation="register"}`. */
      metrics?: ConsulMetrics | undefined;
    },
  ) {
    this.spec = spec;
    this.#serviceId = spec.serviceId;
    this.name = `${spec.service}-sidecar-proxy`;
    this.#client = deps.client;
    this.#logger = deps.logger;
    this.#open = deps.openUpstreamListener;
    this.#metrics = deps.metrics;
    for (const p of spec.configuredPorts.values()) this.#usedPorts.add(p);
    this.#nextPort = spec.portRange.from;
  }

  /** The proxy's service ID, `<service-id>-sidecar-proxy`. */
  get id(): string {
    return `${this.#serviceId}-sidecar-proxy`;
  }

  /** The proxy's own TTL check. */
  get ttlCheckId(): string {
    return `service:${this.id}:1`;
  }

  /** The check aliasing the parent service's health. */
  get aliasCheckId(): string {
    return `service:${this.id}:2`;
  }

  /**
   * The parent service is registered under another ID (another instance holds the one it had, or
   * it moved from an interim ID to the default one): the proxy follows it, registered with the
   * service next. Its registration under the old ID stays until the proxy is registered under the
   * new one (register first, then deregister, as the service itself: one of the two is always in
   * the catalog), and is then deregistered only while the agent still holds it with this
   * instance's Address and Port (the other instance's proxy may be there now).
   */
  follow(serviceId: string): Promise<void> {
    return this.#serial(async () => {
      if (serviceId === this.#serviceId) return;
      const oldId = this.id;
      const held = this.#registered || this.#sent;
      this.#serviceId = serviceId;
      this.#registered = false;
      this.#sent = false;
      // Back to an ID left earlier: it is this proxy's own again, registered next.
      this.#stale.delete(this.id);
      if (held) this.#stale.add(oldId);
    });
  }

  /**
   * Deregisters the proxy's registrations under earlier service IDs ({@link follow}) that the agent
   * holds with this instance's Address and Port, and forgets them; one that cannot be deregistered
   * is left to Consul (reaped once its TTL check stays critical), with a warning. `signal` cancels
   * the reads (not the deregistrations).
   */
  async #dropStale(signal?: AbortSignal): Promise<void> {
    for (const oldId of [...this.#stale]) {
      this.#stale.delete(oldId);
      try {
        const agentHolds = await this.#client.localService(oldId, signal);
        if (holderOf(agentHolds, this.spec) === 'self') await this.#client.deregister(oldId);
      } catch (err) {
        // Cut short by the shutdown, which deregisters it.
        if (signal?.aborted === true) {
          this.#stale.add(oldId);
          return;
        }
        this.#logger.warn({
          msg: "could not deregister the sidecar proxy's old registration; Consul reaps it once its TTL check stays critical",
          serviceId: oldId,
          reason: (err as Error).message,
        });
      }
    }
  }

  /** Whether Consul holds the sidecar (as far as meshlet knows). */
  get registered(): boolean {
    return this.#registered;
  }

  /** Upstream → local bind port, as registered next. */
  get binds(): ReadonlyMap<string, number> {
    return this.#binds;
  }

  /** Binds the upstreams config names (sorted by name, so automatic ports are stable across restarts). */
  async addConfigured(names: Iterable<string>): Promise<void> {
    for (const name of [...names].sort()) await this.#bind(name);
  }

  /** An on-demand upstream was used: bind it and re-register within `debounceMs` (plus the call). */
  addOnDemand(name: string): void {
    if (this.#stopped || this.#binds.has(name) || this.#binding.has(name)) return;
    void this.#bind(name).then(() => {
      if (this.#binds.has(name)) this.#scheduleRegister();
    });
  }

  #bind(name: string): Promise<void> {
    const pending = this.#binding.get(name);
    if (pending !== undefined) return pending;
    if (this.#binds.has(name)) return Promise.resolve();
    const p = this.#doBind(name).finally(() => this.#binding.delete(name));
    this.#binding.set(name, p);
    return p;
  }

  async #doBind(name: string): Promise<void> {
    if (this.#binds.size >= this.spec.maxUpstreams) {
      this.#warnFull(name, `sidecarProxy.maxUpstreams (${this.spec.maxUpstreams}) reached`);
      return;
    }
    const configured = this.spec.configuredPorts.get(name);
    if (configured !== undefined) {
      this.#binds.set(name, configured);
      return;
    }
    if (this.#open === undefined) return;
    const { to } = this.spec.portRange;
    while (this.#nextPort <= to && !this.#stopped) {
      const port = this.#nextPort++;
      if (this.#usedPorts.has(port)) continue;
      this.#usedPorts.add(port);
      try {
        const bound = await this.#open(name, port);
        this.#binds.set(name, bound);
        this.#logger.info({
          msg: 'per-upstream listener for the sidecar registration',
          upstream: name,
          port: bound,
        });
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EADDRINUSE' && code !== 'EACCES') {
          this.#warnFull(name, `cannot listen on 127.0.0.1:${port}: ${(err as Error).message}`);
          return;
        }
      }
    }
    this.#warnFull(
      name,
      `no free port left in sidecarProxy.upstreamPorts ${this.spec.portRange.from}-${this.spec.portRange.to}`,
    );
  }

  #warnFull(name: string, why: string): void {
    if (this.#fullLogged) return;
    this.#fullLogged = true;
    this.#logger.warn({
      msg: 'upstream left out of the sidecar registration (still routed through the outbound listener)',
      upstream: name,
      why,
    });
  }

  #scheduleRegister(): void {
    if (this.#stopped || this.#debounce !== null) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      // Queued behind a registration in flight; before the first one, that one lists the bind.
      void this.#serial(() => (this.#registered ? this.#register('passing') : Promise.resolve()));
    }, this.spec.debounceMs);
    this.#debounce.unref();
  }

  /** Runs Consul calls one at a time, so a re-registration never overtakes a deregistration. */
  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(fn, fn);
    this.#chain = next.catch(() => {});
    return next;
  }

  /** The registration body, in Consul's field names. */
  definition(status: CheckStatus): Record<string, unknown> {
    const s = this.spec;
    const upstreams = [...this.#binds].map(([name, port]) => {
      const u: Record<string, unknown> = {
        DestinationType: 'service',
        DestinationName: name,
        LocalBindAddress: '127.0.0.1',
        LocalBindPort: port,
      };
      const dc = s.datacenterOf(name);
      if (dc !== undefined) u.Datacenter = dc;
      return u;
    });
    return {
      Kind: 'connect-proxy',
      ID: this.id,
      Name: this.name,
      Tags: [...s.tags],
      Address: s.address,
      Port: s.port,
      Meta: { ...s.meta },
      Proxy: {
        DestinationServiceName: s.service,
        DestinationServiceID: this.#serviceId,
        LocalServiceAddress: '127.0.0.1',
        LocalServicePort: s.localServicePort,
        Mode: 'direct',
        Config: { protocol: s.protocol },
        Upstreams: upstreams,
      },
      Checks: [
        {
          CheckID: this.ttlCheckId,
          Name: 'meshlet sidecar alive',
          Notes: `meshlet refreshes this TTL while its inbound listener on port ${s.port} serves`,
          TTL: `${s.ttlMs}ms`,
          Status: status,
          DeregisterCriticalServiceAfter: `${s.deregisterCriticalServiceAfterMs}ms`,
        },
        {
          CheckID: this.aliasCheckId,
          Name: `Connect Sidecar Aliasing ${this.#serviceId}`,
          AliasService: this.#serviceId,
        },
      ],
    };
  }

  async #register(status: CheckStatus): Promise<void> {
    if (this.#stopped || this.#shutdown.signal.aborted) return;
    try {
      const held = this.#sent;
      this.#sent = true;
      await this.#client.register(this.definition(status), this.#shutdown.signal).catch((err: unknown) => {
        // An answer (400, 403) leaves what the agent holds as it was; no answer may mean it took it.
        if (err instanceof ConsulHttpError) this.#sent = held;
        throw err;
      });
    } catch (err) {
      if (this.#shutdown.signal.aborted) return;
      this.#registered = false;
      this.#metrics?.errors.labels('register').inc();
      // Retried on every tick: logged once per distinct reason, not once per tick.
      const reason = (err as Error).message;
      if (this.#lastFailure !== reason) {
        this.#lastFailure = reason;
        this.#logger.warn({
          msg: 'sidecar proxy registration failed; retrying every check interval',
          serviceId: this.id,
          reason,
        });
      }
      return;
    }
    this.#lastFailure = null;
    const first = !this.#registered;
    this.#registered = true;
    if (first)
      this.#logger.info({
        msg: 'registered the sidecar proxy in Consul',
        serviceId: this.id,
        port: this.spec.port,
        upstreams: Object.fromEntries(this.#binds),
      });
    await this.#dropStale(this.#shutdown.signal);
  }

  /** Right after the service was (re-)registered. */
  registerWithService(): Promise<void> {
    return this.#serial(() => this.#register('passing'));
  }

  /** On each of the service's ticks: refresh the TTL; register again when the agent forgot the proxy. */
  refresh(): Promise<void> {
    return this.#serial(async () => {
      if (this.#stopped) return;
      if (!this.#registered) {
        await this.#register('passing');
        return;
      }
      try {
        await this.#client.updateCheck(
          this.ttlCheckId,
          'passing',
          'meshlet is serving',
          this.#shutdown.signal,
        );
      } catch (err) {
        if (registrationLost(err) && !this.#shutdown.signal.aborted) {
          this.#registered = false;
          this.#sent = false;
          this.#logger.warn({ msg: 'Consul lost the sidecar proxy; registering again', serviceId: this.id });
          await this.#register('passing');
        }
      }
    });
  }

  /** Shutdown step 1: the proxy's check turns critical with the service's. */
  markDraining(): Promise<void> {
    this.#shutdown.abort(new Error('meshlet is shutting down'));
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    this.#debounce = null;
    return this.#serial(async () => {
      if (!this.#registered) return;
      await this.#client
        .updateCheck(this.ttlCheckId, 'critical', 'meshlet is shutting down: draining')
        .catch(() => {});
    });
  }

  /** Shutdown, last step, before the service: deregister (under earlier service IDs too). */
  deregister(): Promise<void> {
    this.#stopped = true;
    this.#shutdown.abort(new Error('meshlet is shutting down'));
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    this.#debounce = null;
    return this.#serial(async () => {
      if (this.#registered || this.#sent) {
        this.#registered = false;
        this.#sent = false;
        await this.#client.deregister(this.id).catch((err: Error) =>
          this.#logger.warn({
            msg: 'sidecar proxy deregistration failed',
            serviceId: this.id,
            reason: err.message,
          }),
        );
      }
      // A move cut short by the shutdown: the old registration goes too.
      await this.#dropStale();
    });
  }
}
