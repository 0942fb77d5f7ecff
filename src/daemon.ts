// The running meshlet: assembles registry, upstreams, router and listeners from config; reload and drain.
import { adminHandler } from './admin/admin-handler.ts';
import { restartKeys } from './config/restart-keys.ts';
import type { MeshletConfig } from './config/schema.ts';
import { type HttpListener, listenHttp, listenHttp1 } from './listener/http-listener.ts';
import { type InboundRuntime, inboundSettings, startInboundRuntime } from './listener/inbound-runtime.ts';
import {
  outboundHandler,
  routeOutbound,
  routePerUpstream,
  upstreamListenerHandler,
} from './proxy/outbound-stack.ts';
import type { ProxyContext } from './proxy/proxy-context.ts';
import { type RegistryFactory, registryFactoryFor } from './registry/create-registry.ts';
import type { Registry } from './registry/registry.ts';
import { Router } from './route/router.ts';
import { AccessLog } from './telemetry/access-log.ts';
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

/** Options for starting a daemon. */
export interface DaemonOptions {
  logger: Logger;
  /** The config file, re-read on `reload()` (SIGHUP). */
  configFile?: string;
  /** Export Node process metrics. Default true. */
  processMetrics?: boolean;
}

/** Where the daemon's listeners ended up (useful with port 0). */
export interface DaemonAddresses {
  outbound: { address: string; port: number };
  admin: { address: string; port: number };
  /** Per-upstream listeners by upstream name. */
  upstreams: Record<string, { address: string; port: number }>;
  /** The mTLS inbound listener, when `tls` and `service` are set. */
  inbound?: { address: string; port: number };
}

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
  /** Live WebSocket and CONNECT tunnels (both directions), closed on drain. */
  readonly #tunnels: TunnelSet;
  #listeners: HttpListener[] = [];
  #admin: HttpListener | null = null;
  #inbound: InboundRuntime | null = null;
  #draining = false;
  #stopped: Promise<void> | null = null;

  private constructor(
    config: MeshletConfig,
    options: DaemonOptions,
    createRegistry: RegistryFactory,
    createTlsSource: TlsSourceFactory,
  ) {
    this.config = config;
    this.logger = options.logger;
    this.#configFile = options.configFile;
    this.metrics = new Metrics({ processMetrics: options.processMetrics ?? true });
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
    );
    this.#router = new Router(config.routes, this.table);
    this.#registry = createRegistry(config, {
      table: this.table,
      metrics: this.metrics,
      logger: this.logger,
      inboundPort: () => this.#inbound?.listener.port,
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
      await daemon.#start();
    } catch (err) {
      await daemon.#closeEverything();
      throw err;
    }
    return daemon;
  }

  async #start(): Promise<void> {
    const { listeners } = this.config;
    // Identity first, and the inbound listener bound before registration advertises its port.
    if (this.tls !== null) await this.tls.start();
    if (this.tls !== null && this.config.service !== undefined) {
      this.#inbound = await startInboundRuntime(this.config, this.tls, {
        logger: this.logger,
        metrics: this.metrics,
        tunnels: this.#tunnels,
      });
    }
    await this.#registry.start();
    const view = {
      metrics: this.metrics,
      table: this.table,
      registry: this.#registry,
      draining: () => this.#draining,
      // Read on each call, so a reload rotates it.
      adminToken: () => this.config.listeners.admin.token,
      readinessChecks: () => this.#registry.readinessChecks?.() ?? [],
      tlsConfigured: this.tls !== null,
    };
    this.#admin = await listenHttp1(listeners.admin.address, listeners.admin.port, adminHandler(view));
    const headersTimeoutMs = listeners.outbound.headersTimeout;
    const tunnels: TunnelContext = {
      proxy: this.#ctx,
      metrics: this.#tunnels.metrics,
      tunnels: this.#tunnels,
      dial: tlsDialer(this.tls),
    };
    this.#listeners.push(
      await listenHttp(
        listeners.outbound.address,
        listeners.outbound.port,
        outboundHandler(this.#ctx, () => this.#router),
        {
          headersTimeoutMs,
          onUpgrade: upgradeHandler(tunnels, (req) => routeOutbound(this.#router, req)),
          onConnect: connectHandler(tunnels, () => this.#router),
        },
      ),
    );
    if (this.#inbound !== null) this.#listeners.push(this.#inbound.listener);
    for (const [name, spec] of Object.entries(this.config.upstreams)) {
      if (spec.port === undefined) continue;
      const listener = await listenHttp(
        '127.0.0.1',
        spec.port,
        upstreamListenerHandler(this.#ctx, () => this.table.ensure(name)),
        {
          headersTimeoutMs,
          onUpgrade: upgradeHandler(tunnels, (req) => routePerUpstream(this.table.ensure(name), req)),
        },
      );
      this.#perUpstream[name] = listener;
      this.#listeners.push(listener);
    }
    this.logger.info({ msg: 'meshlet started', ...this.addresses() });
  }

  readonly #perUpstream: Record<string, HttpListener> = {};

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
    };
  }

  /**
   * Re-reads the config file and applies what can change without dropping connections: routes,
   * upstream policies (every key but `port`: see `Upstream.updateSettings`), static endpoints,
   * access log, the admin token, and the inbound allow-list, limits and app timeout. An invalid
   * file is refused and the old config kept. Other listener settings (addresses, ports, socket
   * timeouts, per-upstream `port`) and the registry type need a restart: the warning names the
   * keys, and the reload counts as `partial`, each key in `meshlet_config_keys_not_applied_total`.
   * Resolves with whether the new config was applied. The loader (zod, yaml) is imported on the
   * first reload: a daemon started from a handed-over config has not loaded it.
   */
  async reload(): Promise<boolean> {
    if (this.#configFile === undefined) return false;
    let next: MeshletConfig;
    try {
      next = (await import('./config/load-config.ts')).loadConfigFile(this.#configFile);
    } catch (err) {
      this.metrics.configReloads.labels('config', 'failed').inc();
      this.logger.error({
        msg: 'config reload refused; keeping the running config',
        reason: (err as Error).message,
      });
      return false;
    }
    // A listener started on port 0 already runs on the port a new file may name: no change there.
    const bound = this.addresses();
    const notApplied = restartKeys(this.config, next).filter((key) => {
      const kind = /^listeners\.(outbound|admin|inbound)\.port$/.exec(key)?.[1] as
        'outbound' | 'admin' | 'inbound' | undefined;
      return kind === undefined || next.listeners[kind]?.port !== bound[kind]?.port;
    });
    // A per-upstream listener is bound once: a changed `port` needs a restart like any listener.
    for (const name of new Set([...Object.keys(this.config.upstreams), ...Object.keys(next.upstreams)])) {
      if (this.config.upstreams[name]?.port !== next.upstreams[name]?.port) {
        notApplied.push(`upstreams.${name}.port`);
      }
    }
    if (notApplied.length > 0) {
      this.logger.warn({ msg: 'listener changes need a restart; other changes applied', keys: notApplied });
    }
    this.table.applySpecs(next.upstreams);
    this.#router = new Router(next.routes, this.table);
    if (next.registry.type === this.#registry.type) this.#registry.reload?.(next);
    else {
      this.logger.warn({ msg: 'a registry type change needs a restart; keeping the running registry' });
      notApplied.push('registry.type');
    }
    this.#ctx.access.settings = next.accessLog;
    this.#ctx.bodyTimeoutMs = next.listeners.outbound.bodyTimeout;
    this.#inbound?.apply(next);
    this.config = next;
    for (const key of notApplied) this.metrics.configKeysNotApplied.labels(key).inc();
    const result = notApplied.length > 0 ? 'partial' : 'ok';
    this.metrics.configReloads.labels('config', result).inc();
    this.logger.info({
      msg: 'config reloaded',
      file: this.#configFile,
      result,
      ...(notApplied.length > 0 ? { notApplied } : {}),
    });
    return true;
  }

  /**
   * Graceful shutdown: /ready turns 503, wait `shutdown.drainDelay`, stop accepting, let in-flight
   * requests finish within `shutdown.drainTimeout`, then close everything. Idempotent.
   */
  shutdown(reason = 'shutdown'): Promise<void> {
    this.#stopped ??= this.#drain(reason);
    return this.#stopped;
  }

  async #drain(reason: string): Promise<void> {
    const { drainDelay, drainTimeout } = this.config.shutdown;
    this.logger.info({ msg: 'draining', reason, drainDelayMs: drainDelay, drainTimeoutMs: drainTimeout });
    this.#draining = true;
    this.#ctx.draining = true;
    if (this.#inbound !== null) this.#inbound.ctx.draining = true;
    // Peers first: the instance turns critical in Consul, then the drain delay lets their watches see it.
    await this.#registry.beforeDrain?.();
    if (drainDelay > 0) await sleep(drainDelay);
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
      for (const l of this.#listeners) l.destroy();
    }
    await this.#closeEverything();
    this.logger.info({ msg: 'meshlet stopped', outcome });
  }

  async #closeEverything(): Promise<void> {
    this.#tunnels.destroy();
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
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
