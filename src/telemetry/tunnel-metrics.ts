// Metrics of tunnels (WebSocket upgrades and CONNECT): active, opened by result, bytes each way, duration.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * What kind of tunnel: a WebSocket upgrade, another HTTP/1.1 upgrade (`upstreams.NAME.upgrades`,
 * e.g. Docker's `tcp`: raw bytes, no frames), or a CONNECT tunnel.
 */
export type TunnelKind = 'websocket' | 'upgrade' | 'connect';

/** The kind of an HTTP/1.1 upgrade tunnel from its `Upgrade` header: `websocket`, else `upgrade`. */
export function upgradeKind(upgrade: string | undefined): TunnelKind {
  return upgrade !== undefined && upgrade.trim().toLowerCase() === 'websocket' ? 'websocket' : 'upgrade';
}

/** Why a tunnel ended (a bounded label). */
export type TunnelEnd = 'closed' | 'idle' | 'error' | 'drain';

/** Tunnel durations, seconds: 1 s to a day. */
const DURATION_BUCKETS = [1, 10, 60, 300, 1800, 3600, 21_600, 86_400];

/** The tunnel metrics, registered on the daemon's registry. Labels: direction, upstream, kind — all bounded. */
export class TunnelMetrics {
  /** `meshlet_tunnels_active{direction, upstream, kind}`. */
  readonly active: Gauge<'direction' | 'upstream' | 'kind'>;
  /** `meshlet_tunnels_total{direction, upstream, kind, result}`: handshakes by outcome (established, refused, failed). */
  readonly opened: Counter<'direction' | 'upstream' | 'kind' | 'result'>;
  /** `meshlet_tunnels_closed_total{direction, upstream, kind, reason}`. */
  readonly closed: Counter<'direction' | 'upstream' | 'kind' | 'reason'>;
  /** `meshlet_tunnel_bytes_total{direction, upstream, kind, flow}`: flow `upstream` (client → upstream) or `downstream`. */
  readonly bytes: Counter<'direction' | 'upstream' | 'kind' | 'flow'>;
  /** `meshlet_tunnel_duration_seconds{kind}`. */
  readonly duration: Histogram<'kind'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.active = new Gauge({
      name: 'meshlet_tunnels_active',
      help: 'Established tunnels (WebSocket and other upgrades, CONNECT) by listener direction, upstream and kind.',
      labelNames: ['direction', 'upstream', 'kind'] as const,
      registers,
    });
    this.opened = new Counter({
      name: 'meshlet_tunnels_total',
      help: 'Tunnel handshakes by outcome: established (101 / 200), refused (the upstream answered otherwise), failed (meshlet answered).',
      labelNames: ['direction', 'upstream', 'kind', 'result'] as const,
      registers,
    });
    this.closed = new Counter({
      name: 'meshlet_tunnels_closed_total',
      help: 'Tunnels ended, by reason: closed (by a side), idle (upgradeIdle), error, drain (shutdown).',
      labelNames: ['direction', 'upstream', 'kind', 'reason'] as const,
      registers,
    });
    this.bytes = new Counter({
      name: 'meshlet_tunnel_bytes_total',
      help: 'Bytes relayed through tunnels, by flow: upstream (client to upstream) or downstream.',
      labelNames: ['direction', 'upstream', 'kind', 'flow'] as const,
      registers,
    });
    this.duration = new Histogram({
      name: 'meshlet_tunnel_duration_seconds',
      help: 'Lifetime of established tunnels, in seconds.',
      labelNames: ['kind'] as const,
      buckets: DURATION_BUCKETS,
      registers,
    });
  }
}
