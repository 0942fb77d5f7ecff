// Assembles the inbound side from config: the mTLS listener, its request path, the pool to the local app.
import { h2Client } from '../http2/h2-client.ts';
import { h2AbuseReporter } from '../http2/h2-session-guard.ts';
import { Pool } from '../upstream/undici-pool.ts';
import type { InboundListenerConfig } from '../config/tls-schema.ts';
import type { MeshletConfig } from '../config/schema.ts';
import { inboundHandler, type InboundContext, inboundRefusals } from '../proxy/inbound-stack.ts';
import { KeyedTokenBuckets } from '../resilience/token-bucket.ts';
import { AccessLog } from '../telemetry/access-log.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { MeshTls } from '../tls/mesh-tls.ts';
import type { HttpListener } from './http-listener.ts';
import { listenInbound } from './inbound-listener.ts';
import { ConnectionGuard } from './connection-guard.ts';
import { inboundTunnelHandler } from '../tunnel/inbound-tunnels.ts';
import type { TunnelSet } from '../tunnel/tunnel.ts';

/** A running inbound side. */
export interface InboundRuntime {
  readonly listener: HttpListener;
  readonly ctx: InboundContext;
  /** Applies a reloaded config's allow-list, limits, app timeout and access log (addresses and socket settings need a restart). */
  apply(config: MeshletConfig): void;
  /** Closes the pool to the local app (the listener is drained with the others). */
  close(): Promise<void>;
}

/** `listeners.inbound` with defaults, for a config with `tls` and `service`. */
export function inboundSettings(config: MeshletConfig): InboundListenerConfig {
  return config.listeners.inbound ?? config.defaults.inboundListener;
}

function rateLimitOf(spec: InboundListenerConfig): KeyedTokenBuckets | null {
  const r = spec.rateLimit;
  return r === undefined ? null : new KeyedTokenBuckets({ ratePerSecond: r.perSecond, burst: r.burst });
}

/** Binds the inbound listener for `config.service` (required) with the identity in `tls`. */
export async function startInboundRuntime(
  config: MeshletConfig,
  tls: MeshTls,
  deps: { logger: Logger; metrics: Metrics; tunnels: TunnelSet },
): Promise<InboundRuntime> {
  const service = config.service!;
  const spec = inboundSettings(config);
  const app =
    service.protocol === 'http1'
      ? new Pool(`http://127.0.0.1:${service.port}`, {
          pipelining: 1,
          connect: { timeout: 1000 },
          keepAliveTimeout: 4000,
        })
      : h2Client(`http://127.0.0.1:${service.port}`, { connectTimeoutMs: 1000 });
  const source = tls.source;
  const ctx: InboundContext = {
    logger: deps.logger,
    access: new AccessLog(deps.logger, config.accessLog),
    tlsMetrics: tls.metrics,
    metrics: deps.metrics.forUpstream('inbound', service.name),
    service: service.name,
    app,
    allow: spec.allow,
    authorize:
      source.authorize === undefined ? undefined : (peer) => source.authorize!(peer.identity, peer.serial),
    maxConcurrent: spec.maxConcurrent,
    active: 0,
    rateLimit: rateLimitOf(spec),
    appTimeoutMs: spec.appTimeout,
    idleTimeoutMs: 300_000,
    draining: false,
  };
  let listener: HttpListener;
  try {
    const tunnels = {
      inbound: ctx,
      metrics: deps.tunnels.metrics,
      tunnels: deps.tunnels,
      appPort: service.port,
      idleMs: config.defaults.upstream.timeouts.upgradeIdle,
    };
    listener = await listenInbound(spec.address, spec.port, tls, inboundHandler(ctx), {
      maxHeaderSize: spec.maxHeaderSize,
      headersTimeoutMs: spec.headersTimeout,
      requestTimeoutMs: spec.requestTimeout,
      onRefused: inboundRefusals(ctx),
      onUpgrade: inboundTunnelHandler(tunnels, 'upgrade'),
      onConnect: inboundTunnelHandler(tunnels, 'connect'),
      onH2Abuse: h2AbuseReporter('inbound', deps.metrics.h2SessionsClosed, deps.logger),
      connections: new ConnectionGuard('inbound', deps.metrics.connectionSeries, deps.logger, {
        maxConnections: spec.maxConnections,
      }),
    });
  } catch (err) {
    await app.close();
    throw err;
  }
  let current = spec;
  return {
    listener,
    ctx,
    apply(next) {
      const n = inboundSettings(next);
      ctx.allow = n.allow;
      ctx.maxConcurrent = n.maxConcurrent;
      ctx.appTimeoutMs = n.appTimeout;
      if (JSON.stringify(n.rateLimit) !== JSON.stringify(current.rateLimit)) ctx.rateLimit = rateLimitOf(n);
      ctx.access.settings = next.accessLog;
      current = n;
    },
    close: () => app.close(),
  };
}
