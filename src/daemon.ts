// The running meshlet: assembles registry, upstreams, router and listeners from config; reload and drain.
import { type AdminView, adminHandler, type DrainState } from './admin/admin-handler.ts';
import { configDocument, type ReloadOutcome } from './admin/config-view.ts';
import { type Readiness, readiness } from './admin/readiness.ts';
import type { AdminGrpcServer } from './admin-grpc/admin-grpc-server.ts';
import type { Gateway } from './gateway/gateway.ts';
import { blankConfigRefusal } from './config/config-watch.ts';
import { registryRestartKeys, restartKeys } from './config/restart-keys.ts';
import type { MeshletConfig } from './config/schema.ts';
import { h2AbuseReporter } from './http2/h2-session-guard.ts';
import { type HttpListener, listenHttp, listenHttp1 } from './listener/http-listener.ts';
import { ConnectionGuard, type ConnectionListenerKind } from './listener/connection-guard.ts';
import { type InboundRuntime, inboundSettings, startInboundRuntime } from './listener/inbound-runtime.ts';
import {
  listenerRefusals,
  outboundHandler,
  routeOutbound,
  routePerUpstream,
  upstreamListenerHandler,
} from './proxy/outbound-stack.ts';
import type { ProxyContext } from './proxy/proxy-context.ts';
import { type RegistryFactory, registryFactoryFor } from './registry/create-registry.ts';
import { meshletVersion } from './registry/consul/meshlet-version.ts';
import type { Registry } from './registry/registry.ts';
import { Router } from './route/router.ts';
import { AccessLog } from './telemetry/access-log.ts';
import { compactHeap } from './telemetry/heap-compaction.ts';
import type { Logger } from './telemetry/logger.ts';
import { Metrics } from './telemetry/metrics.ts';
import { TlsMetrics } from './telemetry/tls-metrics.ts';
import { TunnelMetrics } from './telemetry/tunnel-metrics.ts';
import { type TlsSourceFactory, tlsSourceFactoryFor } from './tls/create-tls-source.ts';
import { MeshTls } from './tls/mesh-tls.ts';
import { tlsDialer, tlsPoolFactory } from './tls/tls-pool-factory.ts';
import { connectHandler, upgradeHandler } from './tunnel/outbound-tunnels.ts';
import type { TunnelContext } from './tunnel/tunnel-exchange.ts';
import { TunnelSet } from './tunnel/tunnel.ts';
import { UpstreamTable } from './upstream/upstream-table.ts';
import { OwnListeners } from './upstream/forwarding-loop.ts';
import { mallocInUse } from './cli/malloc-choice.ts';
import { isoTime } from './telemetry/utc-time.ts';

/** Options for starting a daemon. */
export interface DaemonOptions {
  logger: Logger;
  /** The config file, re-read on `reload()` (SIGHUP). */
  configFile?: string;
  /** Export Node process metrics. Default true. */
  processMetrics?: boolean;
  /**
   * Aborted when a stop signal comes while the daemon starts: `start` stops waiting for its
   * certificates, cleans up and rejects with {@link StartAbortedError}, unless registration has
   * begun (then it finishes starting, and the caller shuts the daemon down, which deregisters).
   */
  abort?: AbortSignal;
}

/** `Daemon.start` gave up because its `abort` signal fired before this instance was registered. */
export class StartAbortedError extends Error {
  constructor() {
    super('stopped while starting');
    this.name = 'StartAbortedError';
  }
}

/** Where the daemon's listeners ended up (useful with port 0). */
export interface DaemonAddresses {
  outbound: { address: string; port: number };
  admin: { address: string; port: number };
  /** Per-upstream listeners by upstream name. */
  upstreams: Record<string, { address: string; port: number }>;
  /** The mTLS inbound listener, when `tls` and `service` are set. */
  inbound?: { address: string; port: number };
  /** The gRPC admin API, when `listeners.adminGrpc` is enabled and its port could be bound. */
  adminGrpc?: { address: string; port: number };
  /** The public gateway listener, when `listeners.gateway` is set. */
  gateway?: { address: string; port: number };
}

/** The default port of the gRPC admin API when `listeners.adminGrpc.port` is unset. */
export const ADMIN_GRPC_DEFAULT_PORT = 15002;

/** How a shutdown proceeds (see `Daemon.shutdown`). */
export interface ShutdownOptions {
  /**
   * The local app meshlet runs (`meshlet run -- CMD`): called once peers were told and the drain
   * delay passed; the outbound listener keeps serving (keep-alive too) until it resolves.
   */
  stopApp?: () => Promise<void>;
  /** Skip the drain delay: nothing is left to serve peers (the app already exited). Default false. */
  skipDrainDelay?: boolean;
  /**
   * Settles when the drain delay should end early: the app exited during it, so nothing is left to
   * serve peers. Default: the delay runs its full `shutdown.drainDelay`.
   */
  drainDelayEnds?: Promise<unknown>;
}

/** What asked for a config reload: SIGHUP (`signal`) or a change of the config file (`file`). */
export type ReloadTrigger = 'signal' | 'file';

/** One running meshlet. Create with `Daemon.start`. */
export class Daemon {
  readonly metrics: Metrics;
  readonly table: UpstreamTable;
  readonly logger: Logger;
  /** This instance's mTLS identity (null without `tls`). */
  readonly tls: MeshTls | null;
  config: MeshletConfig;
  #router: Router;
  readonly #registry: Registry;
  readonly #ctx: ProxyContext;
  readonly #configFile: string | undefined;
  /** `metrics.gcDurations` at start: the GC histogram is registered once. */
  readonly #gcDurations: boolean;
  /**
   * The config the daemon started with: what runs for every key only a restart applies (listeners,
   * `service`, `tls`, registry settings, per-upstream `port`). Each reload compares with it, not
   * with the last file, so every partial reload names every file value not in effect.
   */
  readonly #started: MeshletConfig;
  /** Live WebSocket and CONNECT tunnels (both directions), closed on drain. */
  readonly #tunnels: TunnelSet;
  /** Addresses and ports of the listeners bound so far that lead back into meshlet: endpoints reaching them are refused (forwarding-loop.ts). */
  readonly #ownListeners = new OwnListeners();
  #listeners: HttpListener[] = [];
  #admin: HttpListener | null = null;
  #inbound: InboundRuntime | null = null;
  #adminGrpc: AdminGrpcServer | null = null;
  /** Gateway mode (`listeners.gateway`), loaded only when configured. */
  #gateway: Gateway | null = null;
  /** Shutting down. */
  #draining = false;
  /** Drained by POST /drain (or gRPC Drain) and not undone. */
  #drained = false;
  /** The registry's drain calls, in order. */
  #drainCalls: Promise<void> = Promise.resolve();
  readonly #readinessListeners = new Set<() => void>();
  #loadedAt = new Date();
  #lastReload: ReloadOutcome | null = null;
  #stopped: Promise<void> | null = null;

  private constructor(
    config: MeshletConfig,
    options: DaemonOptions,
    createRegistry: RegistryFactory,
    createTlsSource: TlsSourceFactory,
  ) {
    this.config = config;
    this.#started = config;
    this.logger = options.logger;
    this.#configFile = options.configFile;
    this.#gcDurations = config.metrics.gcDurations;
    this.metrics = new Metrics({
      processMetrics: options.processMetrics ?? true,
      gcDurations: this.#gcDurations,
    });
    const tlsMetrics = new TlsMetrics(this.metrics.registry);
    this.#tunnels = new TunnelSet(new TunnelMetrics(this.metrics.registry));
    this.tls =
      config.tls === undefined
        ? null
        : new MeshTls({
            source: createTlsSource(config, this.logger, tlsMetrics),
            metrics: tlsMetrics,
            logger: this.logger,
            minVersion: inboundSettings(config).minTlsVersion,
          });
    this.table = new UpstreamTable(
      this.metrics,
      config.upstreams,
      config.defaults.upstream,
      tlsPoolFactory(this.tls),
      this.logger,
      this.#ownListeners,
    );
    this.#router = new Router(config.routes, this.table);
    this.#registry = createRegistry(config, {
      table: this.table,
      metrics: this.metrics,
      logger: this.logger,
      inboundPort: () => this.#inbound?.listener.port,
      openUpstreamListener: (name, port) => this.#listenForUpstream(name, port),
    });
    this.#ctx = {
      logger: this.logger,
      access: new AccessLog(this.logger, config.accessLog),
      metrics: this.metrics,
      upstreams: this.table,
      unrouted: this.metrics.forUpstream('outbound', ''),
      draining: false,
      bodyTimeoutMs: config.listeners.outbound.bodyTimeout,
    };
  }

  /** Starts registry and listeners. Rejects (after cleaning up) when a port cannot be bound. */
  static async start(config: MeshletConfig, options: DaemonOptions): Promise<Daemon> {
    const [registry, tlsSource] = await Promise.all([
      registryFactoryFor(config),
      tlsSourceFactoryFor(config),
    ]);
    const daemon = new Daemon(config, options, registry, tlsSource);
    try {
      await daemon.#start(options.abort);
    } catch (err) {
      await daemon.#closeEverything();
      throw err;
    }
    return daemon;
  }

  async #start(abort: AbortSignal | undefined): Promise<void> {
    const { listeners } = this.config;
    // Identity first, and the inbound listener bound before registration advertises its port.
    // Until the registry starts, a stop signal ends the start (the certificates may take long).
    if (this.tls !== null) await untilAborted(this.tls.start(), abort);
    if (this.tls !== null && this.config.service !== undefined) {
      this.#inbound = await startInboundRuntime(this.config, this.tls, {
        logger: this.logger,
        metrics: this.metrics,
        tunnels: this.#tunnels,
      });
    }
    if (abort?.aborted === true) throw new StartAbortedError();
    await this.#registry.start();
    const view = {
      metrics: this.metrics,
      table: this.table,
      registry: this.#registry,
      draining: () => this.#draining || this.#drained,
      drainReason: () => (this.#draining ? 'shutting down' : 'drained by the admin API (POST /drain)'),
      setDrained: (on: boolean) => this.setDrained(on),
      configDocument: () => configDocument(this.config, this.#configFile, this.#loadedAt, this.#lastReload),
      version: meshletVersion(),
      adminGrpcAddress: () => {
        const g = this.#adminGrpc;
        return g === null ? null : `${g.address.includes(':') ? `[${g.address}]` : g.address}:${g.port}`;
      },
      // Read on each call, so a reload rotates it.
      adminToken: () => this.config.listeners.admin.token,
      readinessChecks: () => this.#registry.readinessChecks?.() ?? [],
      tlsConfigured: this.tls !== null,
    } satisfies AdminView;
    this.#view = view;
    this.#admin = await listenHttp1(listeners.admin.address, listeners.admin.port, adminHandler(view), {
      connections: this.#connectionGuard('admin'),
    });
    this.#ownListeners.add(this.#admin.port, this.#admin.address);
    await this.#startAdminGrpc(view);
    if (this.#adminGrpc !== null) this.#ownListeners.add(this.#adminGrpc.port, this.#adminGrpc.address);
    // Startup's garbage goes before the data listeners open, so no request waits for this collection.
    const compaction = compactHeap();
    this.logger.debug({
      msg: 'heap compacted',
      ms: Math.round(compaction.ms),
      releasedMiB: Math.round(compaction.releasedBytes / 1048576),
    });
    const headersTimeoutMs = listeners.outbound.headersTimeout;
    const tunnels: TunnelContext = {
      proxy: this.#ctx,
      metrics: this.#tunnels.metrics,
      tunnels: this.#tunnels,
      dial: tlsDialer(this.tls),
    };
    // First in the list (addresses() reads it there): the registry may have bound per-upstream ones already.
    this.#listeners.unshift(
      await listenHttp(
        listeners.outbound.address,
        listeners.outbound.port,
        outboundHandler(this.#ctx, () => this.#router),
        {
          headersTimeoutMs,
          maxHeadersCount: listeners.outbound.maxHeadersCount,
          onRefused: listenerRefusals(this.#ctx),
          onH2Abuse: h2AbuseReporter('outbound', this.metrics.h2SessionsClosed, this.logger),
          connections: this.#connectionGuard('outbound', listeners.outbound.maxConnections),
          onUpgrade: upgradeHandler(tunnels, (req) => routeOutbound(this.#router, req)),
          onConnect: connectHandler(tunnels, () => this.#router),
        },
      ),
    );
    this.#ownListeners.add(this.#listeners[0]!.port, this.#listeners[0]!.address);
    if (this.#inbound !== null) this.#listeners.push(this.#inbound.listener);
    for (const [name, spec] of Object.entries(this.config.upstreams)) {
      if (spec.port !== undefined) await this.#listenForUpstream(name, spec.port);
    }
    if (listeners.gateway !== undefined) {
      const { Gateway } = await import('./gateway/gateway.ts');
      const deps = {
        ctx: this.#ctx,
        table: this.table,
        logger: this.logger,
        registry: this.metrics.registry,
      };
      this.#gateway = await Gateway.start(this.config, deps);
      this.#listeners.push(this.#gateway.listener);
      this.#ownListeners.add(this.#gateway.listener.port, this.#gateway.listener.address);
    }
    this.logger.info({ msg: 'meshlet started', ...this.addresses(), malloc: mallocInUse() });
  }

  /**
   * A per-upstream listener on 127.0.0.1:port: config's `upstreams.NAME.port`, or one the Consul
   * registry binds for its sidecar registration. Resolves with the bound port.
   */
  async #listenForUpstream(name: string, port: number): Promise<number> {
    if (this.#stopped !== null) throw new Error('meshlet is stopping');
    const tunnels: TunnelContext = {
      proxy: this.#ctx,
      metrics: this.#tunnels.metrics,
      tunnels: this.#tunnels,
      dial: tlsDialer(this.tls),
    };
    // get() discovers a name whose on-demand watch went idle; ensure() for one nobody discovers.
    const upstream = () => this.table.get(name) ?? this.table.ensure(name);
    const listener = await listenHttp('127.0.0.1', port, upstreamListenerHandler(this.#ctx, upstream), {
      headersTimeoutMs: this.config.listeners.outbound.headersTimeout,
      maxHeadersCount: this.config.listeners.outbound.maxHeadersCount,
      onRefused: listenerRefusals(this.#ctx),
      onH2Abuse: h2AbuseReporter('upstream', this.metrics.h2SessionsClosed, this.logger),
      connections: this.#connectionGuard('upstream', this.config.listeners.outbound.maxConnections),
      onUpgrade: upgradeHandler(tunnels, (req) => routePerUpstream(upstream(), req)),
    });
    this.#perUpstream[name] = listener;
    this.#listeners.push(listener);
    this.#ownListeners.add(listener.port, listener.address);
    return listener.port;
  }

  readonly #perUpstream: Record<string, HttpListener> = {};

  /** The connection cap (`maxConnections`, default none) and count of one listener of this daemon. */
  #connectionGuard(listener: ConnectionListenerKind, maxConnections?: number): ConnectionGuard {
    return new ConnectionGuard(listener, this.metrics.connectionSeries, this.logger, { maxConnections });
  }
  #view: AdminView | null = null;

  /**
   * Starts the gRPC admin API unless `listeners.adminGrpc.enabled` is false; grpc-js is imported
   * only then. With the port unset, a taken 15002 is a warning (another meshlet on the host) and
   * meshlet runs without it; a port the config names must be bound.
   */
  async #startAdminGrpc(view: AdminView): Promise<void> {
    const spec = this.config.listeners.adminGrpc;
    if (!spec.enabled) return;
    // On loopback (the default) grpc-js loads on the first call; beyond it the server starts now,
    // so the admin rules see each caller's own address.
    const { isLoopback, listenAdminGrpcLazily } = await import('./admin-grpc/lazy-admin-grpc.ts');
    const startAdminGrpc = isLoopback(spec.address)
      ? listenAdminGrpcLazily
      : (await import('./admin-grpc/admin-grpc-server.ts')).startAdminGrpc;
    const grpcView = {
      ...view,
      onReadinessChange: (onChange: () => void) => {
        this.#readinessListeners.add(onChange);
        return () => this.#readinessListeners.delete(onChange);
      },
    };
    try {
      this.#adminGrpc = await startAdminGrpc(
        grpcView,
        spec.address,
        spec.port ?? ADMIN_GRPC_DEFAULT_PORT,
        this.logger,
      );
    } catch (err) {
      if (spec.port !== undefined || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      this.logger.warn({
        msg: 'gRPC admin API not started: its default port is in use (set listeners.adminGrpc.port, or enabled: false)',
        address: spec.address,
        port: ADMIN_GRPC_DEFAULT_PORT,
      });
    }
  }

  /**
   * meshlet's readiness as `GET /ready` computes it; `ignore` leaves checks out by name (the
   * `meshlet run -- CMD` gate ignores `app`).
   */
  readiness(ignore: readonly string[] = []): Readiness {
    return readiness(this.#view!, ignore);
  }

  /**
   * `POST /drain` (true) and `DELETE /drain` (false): the first half of a shutdown, reversibly —
   * `/ready` and gRPC health fail, the registry reports the instance critical (Consul), the inbound
   * listener answers with `connection: close`, and every request is still served. Idempotent.
   * During a shutdown it changes nothing and says so (`shuttingDown`).
   */
  async setDrained(on: boolean): Promise<DrainState> {
    if (this.#draining) return { draining: true, shuttingDown: true };
    if (this.#drained !== on) {
      this.#drained = on;
      if (this.#inbound !== null) this.#inbound.ctx.draining = on;
      this.logger.info({
        msg: on ? 'drained by the admin API: not ready, still serving' : 'drain undone: ready again',
      });
      this.#notifyReadiness();
      const registry = this.#registry;
      this.#drainCalls = this.#drainCalls.then(() => registry.setDraining?.(on));
    }
    await this.#drainCalls;
    return { draining: this.#drained || this.#draining, shuttingDown: this.#draining };
  }

  #notifyReadiness(): void {
    for (const listener of this.#readinessListeners) listener();
  }

  addresses(): DaemonAddresses {
    const outbound = this.#listeners[0]!;
    const upstreams: DaemonAddresses['upstreams'] = {};
    for (const [name, l] of Object.entries(this.#perUpstream))
      upstreams[name] = { address: l.address, port: l.port };
    return {
      outbound: { address: outbound.address, port: outbound.port },
      admin: { address: this.#admin!.address, port: this.#admin!.port },
      upstreams,
      ...(this.#inbound === null
        ? {}
        : { inbound: { address: this.#inbound.listener.address, port: this.#inbound.listener.port } }),
      ...(this.#adminGrpc === null
        ? {}
        : { adminGrpc: { address: this.#adminGrpc.address, port: this.#adminGrpc.port } }),
      ...(this.#gateway === null
        ? {}
        : { gateway: { address: this.#gateway.listener.address, port: this.#gateway.listener.port } }),
    };
  }

  /**
   * Reloads the config file (see `#reload` for what applies), one reload at a time: one asked for
   * while another runs runs once after it (requests meanwhile join that one, whose trigger is
   * `signal` when any of them was). Once a shutdown began nothing is reloaded (a registry reload
   * could register the draining instance again): resolves false.
   * @param trigger What asked for it, named in the reload's log line. Default `signal` (SIGHUP).
   */
  reload(trigger: ReloadTrigger = 'signal'): Promise<boolean> {
    const queued = this.#reloadQueued;
    if (queued !== null) {
      queued.triggers.add(trigger);
      return queued.done;
    }
    const running = this.#reloadRunning;
    if (running === null) return this.#runReload(trigger);
    const triggers = new Set<ReloadTrigger>([trigger]);
    const next = (): Promise<boolean> => {
      this.#reloadQueued = null;
      return this.#runReload(triggers.has('signal') ? 'signal' : 'file');
    };
    const done = running.then(next, next);
    this.#reloadQueued = { triggers, done };
    return done;
  }

  /** The reload running now, and the one asked for meanwhile (see `reload`). */
  #reloadRunning: Promise<boolean> | null = null;
  #reloadQueued: { triggers: Set<ReloadTrigger>; done: Promise<boolean> } | null = null;

  #runReload(trigger: ReloadTrigger): Promise<boolean> {
    if (this.#stopped !== null) {
      this.logger.info({ msg: 'config reload skipped: meshlet is shutting down', trigger });
      return Promise.resolve(false);
    }
    const run = this.#reload(trigger).finally(() => {
      if (this.#reloadRunning === run) this.#reloadRunning = null;
    });
    this.#reloadRunning = run;
    return run;
  }

  /**
   * Re-reads the config file and applies what can change without dropping connections: routes,
   * upstream policies (every key but `port`: see `Upstream.updateSettings`), static endpoints,
   * access log, the admin token, the inbound allow-list, limits and app timeout, and each
   * listener's `maxConnections` (open connections stay). An invalid
   * file is refused and the old config kept, and so is an empty one (a write in progress). Other listener settings (addresses, ports, socket
   * timeouts, per-upstream `port`) and the registry type need a restart: the warning names the
   * keys, and the reload counts as `partial`, each key in `meshlet_config_keys_not_applied_total`.
   * Those keys are found against the config the daemon started with, so each reload names every
   * file value not in effect (a key named once stays named until a restart or until the file is back
   * at the running value); `this.config` (and `GET /config`) is the file last applied. Resolves
   * with whether the new config was applied. The loader (zod, yaml) is imported on the first
   * reload: a daemon started from a handed-over config has not loaded it.
   */
  async #reload(trigger: ReloadTrigger): Promise<boolean> {
    if (this.#configFile === undefined) return false;
    let next: MeshletConfig;
    try {
      const blank = blankConfigRefusal(this.#configFile);
      if (blank !== null) throw new Error(blank);
      next = (await import('./config/load-config.ts')).loadConfigFile(this.#configFile);
    } catch (err) {
      this.metrics.configReloads.labels('config', 'failed').inc();
      this.#lastReload = { result: 'failed', at: isoTime(Date.now()), reason: (err as Error).message };
      this.logger.error({
        msg: 'config reload refused; keeping the running config',
        trigger,
        reason: (err as Error).message,
      });
      return false;
    }
    // Compared with the config started with (what runs), not the last file: a key a partial reload
    // named stays named until the file is back at the running value. A listener started on port 0
    // already runs on the port a new file may name: no change there.
    const started = this.#started;
    const bound = this.addresses();
    const notApplied = restartKeys(started, next).filter((key) => {
      const kind = /^listeners\.(outbound|admin|inbound|gateway)\.port$/.exec(key)?.[1] as
        'outbound' | 'admin' | 'inbound' | 'gateway' | undefined;
      return kind === undefined || next.listeners[kind]?.port !== bound[kind]?.port;
    });
    // A per-upstream listener is bound once: a changed `port` needs a restart like any listener.
    for (const name of new Set([...Object.keys(started.upstreams), ...Object.keys(next.upstreams)])) {
      if (started.upstreams[name]?.port !== next.upstreams[name]?.port) {
        notApplied.push(`upstreams.${name}.port`);
      }
    }
    if (notApplied.length > 0) {
      this.logger.warn({ msg: 'listener changes need a restart; other changes applied', keys: notApplied });
    }
    this.table.applySpecs(next.upstreams);
    this.#router = new Router(next.routes, this.table);
    if (next.registry.type === this.#registry.type) {
      this.#registry.reload?.(next);
      // Registry settings its reload does not apply (the agent's address, registration, …): named, values never shown.
      const registryKeys = registryRestartKeys(started, next);
      if (registryKeys.length > 0) {
        this.logger.warn({
          msg: 'registry changes need a restart; other changes applied',
          keys: registryKeys,
        });
        notApplied.push(...registryKeys);
      }
    } else {
      this.logger.warn({ msg: 'a registry type change needs a restart; keeping the running registry' });
      notApplied.push('registry.type');
    }
    this.#ctx.access.settings = next.accessLog;
    this.#ctx.bodyTimeoutMs = next.listeners.outbound.bodyTimeout;
    this.#inbound?.apply(next);
    if (this.#gateway !== null && !this.#gateway.apply(next)) notApplied.push('gateway');
    this.#applyConnectionCaps(next);
    // The GC histogram is set up once, at start.
    if (next.metrics.gcDurations !== this.#gcDurations) notApplied.push('metrics.gcDurations');
    this.config = next;
    for (const key of notApplied) this.metrics.configKeysNotApplied.labels(key).inc();
    const result = notApplied.length > 0 ? 'partial' : 'ok';
    this.metrics.configReloads.labels('config', result).inc();
    this.#loadedAt = new Date();
    this.#lastReload = {
      result,
      at: isoTime(this.#loadedAt.getTime()),
      ...(notApplied.length > 0 ? { notApplied } : {}),
    };
    this.logger.info({
      msg: 'config reloaded',
      file: this.#configFile,
      trigger,
      result,
      ...(notApplied.length > 0 ? { notApplied } : {}),
    });
    return true;
  }

  /**
   * A reload's `listeners.{outbound,inbound,gateway}.maxConnections` on the running listeners (the
   * outbound one also on each per-upstream listener), as Envoy applies a changed `max_connections`:
   * open connections stay, new ones are dropped while the cap is reached. A gateway block that went
   * away keeps its running listener and cap (its address and port need a restart).
   */
  #applyConnectionCaps(next: MeshletConfig): void {
    const outbound = next.listeners.outbound.maxConnections;
    this.#listeners[0]?.setMaxConnections(outbound);
    for (const l of Object.values(this.#perUpstream)) l.setMaxConnections(outbound);
    this.#inbound?.listener.setMaxConnections(inboundSettings(next).maxConnections);
    const gateway = next.listeners.gateway;
    if (gateway !== undefined) this.#gateway?.listener.setMaxConnections(gateway.maxConnections);
  }

  /**
   * Graceful shutdown, in phases:
   * 1. peers are told: /ready and gRPC health turn 503/NOT_SERVING, the registry marks the instance
   *    critical (Consul), then `shutdown.drainDelay` passes (skipped with `skipDrainDelay`);
   * 2. with `stopApp` (`meshlet run -- CMD`): the inbound listener stops accepting, and the app is
   *    stopped while the outbound listener still serves it;
   * 3. every listener stops accepting, in-flight requests finish within `shutdown.drainTimeout`,
   *    then everything closes.
   * Idempotent: later calls get the first call's promise.
   */
  shutdown(reason = 'shutdown', options: ShutdownOptions = {}): Promise<void> {
    this.#stopped ??= this.#drain(reason, options);
    return this.#stopped;
  }

  async #drain(reason: string, options: ShutdownOptions): Promise<void> {
    const { drainTimeout } = this.config.shutdown;
    const drainDelay = options.skipDrainDelay === true ? 0 : this.config.shutdown.drainDelay;
    this.logger.info({ msg: 'draining', reason, drainDelayMs: drainDelay, drainTimeoutMs: drainTimeout });
    this.#draining = true;
    this.#notifyReadiness();
    // The app's own calls keep their keep-alive connections until it is gone.
    if (options.stopApp === undefined) this.#ctx.draining = true;
    if (this.#inbound !== null) this.#inbound.ctx.draining = true;
    // Peers first: the instance turns critical in Consul, then the drain delay lets their watches see it.
    await this.#drainCalls;
    await this.#registry.beforeDrain?.();
    if (drainDelay > 0) {
      const delay = sleep(drainDelay).then(() => 'passed' as const);
      const ended = options.drainDelayEnds?.then(() => 'app exited' as const) ?? delay;
      if ((await Promise.race([delay, ended])) === 'app exited')
        this.logger.info({ msg: 'drain delay cut short: the app exited, nothing is left to serve peers' });
    }
    if (options.stopApp !== undefined) {
      const inbound = this.#inbound?.listener;
      inbound?.stopAccepting();
      const sweepInbound = setInterval(() => inbound?.closeIdleConnections(), 50);
      try {
        await options.stopApp();
      } finally {
        clearInterval(sweepInbound);
      }
      this.#ctx.draining = true;
    }
    for (const l of this.#listeners) l.stopAccepting();
    // A tunnel never ends by itself: WebSockets get close 1001 (going away) now, at a frame boundary.
    void this.#tunnels.goAway();
    // Keep-alive connections close once their in-flight response is done (they get `connection: close`).
    const sweep = setInterval(() => {
      for (const l of this.#listeners) l.closeIdleConnections();
    }, 50);
    const deadline = sleep(drainTimeout).then(() => 'timeout' as const);
    const done = Promise.all(this.#listeners.map((l) => l.closed())).then(() => 'drained' as const);
    const outcome = await Promise.race([done, deadline]);
    clearInterval(sweep);
    if (outcome === 'timeout') {
      this.logger.warn({ msg: 'drain timeout: closing remaining connections' });
      // What these connections still carried ends as meshlet's cut, not a client's leaving (`cutBy`).
      this.#ctx.access.cut('drain');
      this.#inbound?.ctx.access.cut('drain');
      for (const l of this.#listeners) l.destroy();
    }
    await this.#closeEverything();
    this.logger.info({ msg: 'meshlet stopped', outcome });
  }

  async #closeEverything(): Promise<void> {
    this.#tunnels.destroy();
    this.#gateway?.close();
    for (const l of this.#listeners) {
      l.stopAccepting();
      l.destroy();
    }
    if (this.#inbound !== null && !this.#listeners.includes(this.#inbound.listener)) {
      this.#inbound.listener.stopAccepting();
      this.#inbound.listener.destroy();
    }
    await this.#registry.stop();
    await this.table.close();
    await this.#inbound?.close();
    await this.tls?.stop();
    if (this.#admin !== null) {
      this.#admin.stopAccepting();
      this.#admin.destroy();
    }
    // Watch streams end after their last message (NOT_SERVING), within CLOSE_GRACE_MS.
    await this.#adminGrpc?.close();
    this.#readinessListeners.clear();
  }
}

/** `work`, or a {@link StartAbortedError} as soon as `abort` fires (`work` goes on, its failure ignored). */
function untilAborted<T>(work: Promise<T>, abort: AbortSignal | undefined): Promise<T> {
  if (abort === undefined) return work;
  work.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new StartAbortedError());
    if (abort.aborted) return onAbort();
    abort.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        abort.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        abort.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
