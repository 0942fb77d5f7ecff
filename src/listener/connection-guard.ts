// A listener's connection cap and count: net.Server's maxConnections (changed live on reload), drops counted and warned about at most once per 10 s, accept errors logged, never fatal.
import type { Server as NetServer, Socket } from 'node:net';
import type { Logger } from '../telemetry/logger.ts';
import { RefusalLog } from '../tls/refusal-log.ts';

/** Which listener a connection came to: the `listener` label. */
export type ConnectionListenerKind = 'outbound' | 'upstream' | 'inbound' | 'gateway' | 'admin';

/** The daemon's listener connection series (`Metrics.listenerConnections`, `Metrics.listenerConnectionsDropped`). */
export interface ConnectionSeries {
  /** `meshlet_listener_connections{listener}`: connections open now. */
  readonly open: { labels(labels: { listener: ConnectionListenerKind }): { inc(): void; dec(): void } };
  /** `meshlet_listener_connections_dropped_total{listener}`: connections closed at accept at the cap. */
  readonly dropped: { labels(labels: { listener: ConnectionListenerKind }): { inc(): void } };
}

/** Longest quiet time between two warnings of one listener about the same trouble, ms: 10 s. */
export const CONNECTION_WARNING_WINDOW_MS = 10_000;

/** Options of {@link ConnectionGuard}. */
export interface ConnectionGuardOptions {
  /** Most connections open at once (`listeners.NAME.maxConnections`); more are closed at accept. Default none. */
  readonly maxConnections?: number | undefined;
  /** Quiet time between two warnings of the same kind, ms. Default {@link CONNECTION_WARNING_WINDOW_MS}. */
  readonly warningWindowMs?: number;
}

/** node:net's `drop` event data (Node ≥ 18.6). */
interface DropInfo {
  readonly remoteAddress?: string;
}

/**
 * Watches one listener's socket server ({@link attach}): sets `maxConnections` (Envoy's listener
 * `max_connections`; Node closes each connection accepted beyond it and emits `drop`), counts open
 * connections of every protocol (HTTP/1.1, h2c and h2, TLS, tunnels: they all hold one) and dropped
 * ones, and writes at most one warning per kind per {@link CONNECTION_WARNING_WINDOW_MS}
 * (`listener connection dropped: maxConnections reached`, then `suppressed`: how many were left
 * out). An accept that fails (`EMFILE`/`ENFILE`: the process or host is out of file descriptors)
 * is logged the same way and never stops the listener; libuv closes the connections it cannot take.
 * A reload changes the cap of the running listener ({@link setMaxConnections}).
 */
export class ConnectionGuard {
  readonly listener: ConnectionListenerKind;
  #maxConnections: number | undefined;
  /** The server {@link attach} was given, or null before. */
  #server: NetServer | null = null;
  readonly #series: ConnectionSeries;
  readonly #log: RefusalLog;
  readonly #errors: RefusalLog;

  constructor(
    listener: ConnectionListenerKind,
    series: ConnectionSeries,
    logger: Logger,
    options: ConnectionGuardOptions = {},
  ) {
    this.listener = listener;
    this.#maxConnections = options.maxConnections;
    this.#series = series;
    const windowMs = options.warningWindowMs ?? CONNECTION_WARNING_WINDOW_MS;
    this.#log = new RefusalLog(logger, {
      msg: 'listener connection dropped: maxConnections reached',
      windowMs,
    });
    this.#errors = new RefusalLog(logger, { msg: 'listener could not accept a connection', windowMs });
  }

  /** The cap in force (`listeners.NAME.maxConnections`), or undefined for none. */
  get maxConnections(): number | undefined {
    return this.#maxConnections;
  }

  /**
   * Changes the cap of the running listener (a reload), as Envoy's listener `max_connections`
   * runtime change: raised, new connections are accepted at once; lowered below what is open, no
   * open connection is closed, and new ones are dropped until fewer than `max` are open. undefined
   * removes the cap. Connections keep being counted in `meshlet_listener_connections` throughout.
   */
  setMaxConnections(max: number | undefined): void {
    this.#maxConnections = max;
    // net.Server reads maxConnections at each accept; undefined (its default) is no cap.
    if (this.#server !== null) this.#server.maxConnections = max as number;
  }

  /** Applies the cap to `server` (bound or about to be) and starts counting its connections. */
  attach(server: NetServer): void {
    this.#server = server;
    // The label children once per listener: no label hashing per connection.
    const open = this.#series.open.labels({ listener: this.listener });
    const dropped = this.#series.dropped.labels({ listener: this.listener });
    const closed = (): void => open.dec();
    if (this.maxConnections !== undefined) server.maxConnections = this.maxConnections;
    server.on('connection', (socket: Socket) => {
      open.inc();
      socket.once('close', closed);
    });
    server.on('drop', (info?: DropInfo) => {
      dropped.inc();
      this.#log.record('drop', {
        listener: this.listener,
        port: portOf(server),
        maxConnections: this.maxConnections,
        peer: info?.remoteAddress ?? 'unknown',
      });
    });
    // net.Server emits accept failures as 'error': with no listener, one would end the process.
    server.on('error', (err: NodeJS.ErrnoException) => {
      this.#errors.record(err.code ?? err.message, {
        listener: this.listener,
        port: portOf(server),
        reason: err.code ?? err.message,
        ...(err.code === 'EMFILE' || err.code === 'ENFILE'
          ? { detail: 'out of file descriptors: raise the fd limit (ulimit -n) or set maxConnections' }
          : {}),
      });
    });
  }
}

/** The port `server` is bound to, or undefined. */
function portOf(server: NetServer): number | undefined {
  const a = server.address();
  return a !== null && typeof a === 'object' ? a.port : undefined;
}
