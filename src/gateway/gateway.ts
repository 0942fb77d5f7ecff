// Gateway mode: the public edge listener and its compiled routes, started by the daemon when `listeners.gateway` is set, reloaded with the config.
import type { Registry } from 'prom-client';
import type { MeshletConfig } from '../config/schema.ts';
import { h2AbuseReporter } from '../http2/h2-session-guard.ts';
import { ConnectionGuard } from '../listener/connection-guard.ts';
import type { HttpListener, RefusalListener } from '../listener/http-listener.ts';
import { listenerRefusals } from '../proxy/outbound-stack.ts';
import type { ProxyContext } from '../proxy/proxy-context.ts';
import type { Logger } from '../telemetry/logger.ts';
import { GatewayMetrics } from '../telemetry/gateway-metrics.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';
import { gatewayHandler } from './gateway-handler.ts';
import { listenGateway, type GatewaySocket } from './gateway-listener.ts';
import {
  buildGatewayState,
  type GatewayState,
  retireAuthenticators,
  retireRoutes,
  retireTenants,
} from './gateway-state.ts';

/** What the gateway shares with the daemon. */
export interface GatewayDeps {
  /** The daemon's request-path context; the gateway's own derives from it (its body timeout, the same draining flag). */
  readonly ctx: ProxyContext;
  readonly table: UpstreamTable;
  readonly logger: Logger;
  readonly registry: Registry;
}

/**
 * What the gateway listener calls for a request it answered itself (a malformed, slow or oversized
 * head; over HTTP/2 a Host naming another authority): counted and logged as its handler's refusals
 * are (`meshlet_local_replies_total`, an access line; a `bad_request` also in
 * `meshlet_gateway_unrouted_total`, as the handler counts a malformed request). A parsed request's
 * id is the one the gateway's forwarding pass would keep under `drop()` (the running state's).
 */
function gatewayRefusals(
  ctx: ProxyContext,
  metrics: GatewayMetrics,
  drop: () => ReadonlySet<string>,
): RefusalListener {
  const counted = listenerRefusals(ctx, drop);
  return (err, method, socket, refused) => {
    if (err.code === 'bad_request') metrics.unrouted.labels('bad_request').inc();
    return counted(err, method, socket, refused);
  };
}

/** A running gateway. Create with {@link Gateway.start}. */
export class Gateway {
  readonly listener: HttpListener;
  readonly metrics: GatewayMetrics;
  #state: GatewayState;
  readonly #socket: GatewaySocket;
  readonly #deps: GatewayDeps;
  readonly #ctx: ProxyContext & { bodyTimeoutMs: number };

  private constructor(
    socket: GatewaySocket,
    state: GatewayState,
    metrics: GatewayMetrics,
    deps: GatewayDeps,
    ctx: ProxyContext & { bodyTimeoutMs: number },
  ) {
    this.listener = socket.listener;
    this.#socket = socket;
    this.#state = state;
    this.metrics = metrics;
    this.#deps = deps;
    this.#ctx = ctx;
  }

  /**
   * Compiles `config.gateway` and binds `listeners.gateway` (which must be set). Rejects when a
   * secret or keys file cannot be loaded or the port cannot be bound.
   */
  static async start(config: MeshletConfig, deps: GatewayDeps): Promise<Gateway> {
    const spec = config.listeners.gateway!;
    const metrics = new GatewayMetrics(deps.registry);
    const state = buildGatewayState(config, { table: deps.table, logger: deps.logger, metrics }, null);
    // Reads `draining` (and everything else) through the daemon's context; only the body timeout is the edge's own.
    const ctx = Object.create(deps.ctx, {
      bodyTimeoutMs: { value: spec.bodyTimeout, writable: true, enumerable: true },
    }) as ProxyContext & { bodyTimeoutMs: number };
    let gateway: Gateway | null = null;
    try {
      const socket = await listenGateway(
        spec,
        gatewayHandler(ctx, () => gateway!.#state, metrics),
        deps.logger,
        h2AbuseReporter('gateway', deps.ctx.metrics.h2SessionsClosed, deps.logger),
        new ConnectionGuard('gateway', deps.ctx.metrics.connectionSeries, deps.logger, {
          maxConnections: spec.maxConnections,
        }),
        gatewayRefusals(ctx, metrics, () => (gateway === null ? state : gateway.#state).drop),
      );
      gateway = new Gateway(socket, state, metrics, deps, ctx);
    } catch (err) {
      for (const { auth } of state.authenticators.values()) auth.close();
      throw err;
    }
    return gateway;
  }

  /**
   * Applies a reloaded config: routes, authenticators (unchanged ones keep their caches), tenants,
   * limits and the body timeout. Listener address, port, TLS file paths and socket limits need a
   * restart (the daemon reports them). Returns false, keeping the running gateway, when the new
   * block cannot be loaded (a missing secret or keys file).
   */
  apply(next: MeshletConfig): boolean {
    let state: GatewayState;
    try {
      state = buildGatewayState(next, { ...this.#deps, metrics: this.metrics }, this.#state);
    } catch (err) {
      this.#deps.logger.error({
        msg: 'gateway config not applied; keeping the running one',
        reason: (err as Error).message,
      });
      return false;
    }
    const old = this.#state;
    this.#state = state;
    if (next.listeners.gateway !== undefined) this.#ctx.bodyTimeoutMs = next.listeners.gateway.bodyTimeout;
    retireAuthenticators(old, state, this.metrics);
    retireTenants(old, state, this.metrics);
    retireRoutes(old, state, this.metrics);
    return true;
  }

  /** Stops certificate and key-file watchers and timers (the listener is closed with the daemon's). */
  close(): void {
    this.#socket.close();
    for (const { auth } of this.#state.authenticators.values()) auth.close();
  }
}
