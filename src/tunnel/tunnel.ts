// An established tunnel: bytes both ways with backpressure, an idle timeout, and a clean close on drain.
import type { Socket } from 'node:net';
import type { TunnelEnd, TunnelKind, TunnelMetrics } from '../telemetry/tunnel-metrics.ts';
import { closeFrame, FrameBoundaries, GOING_AWAY } from './ws-frames.ts';

/** Labels and settings of one tunnel. */
export interface TunnelOptions {
  readonly kind: TunnelKind;
  readonly direction: 'outbound' | 'inbound';
  readonly upstream: string;
  /** Close the tunnel after this long with no byte either way, ms (`timeouts.upgradeIdle`). */
  readonly idleMs: number;
  /** Told once, when the tunnel ended (bytes each way, why). */
  onEnd?(stats: { up: number; down: number; reason: TunnelEnd; seconds: number }): void;
}

/**
 * Relays bytes between the client's socket and the upstream's: each direction is piped with
 * backpressure; an end on one side ends the other (half-close passes through); an error on either
 * side destroys both. Silence longer than `idleMs` ends it. The HTTP servers' own timeouts do not
 * apply any more (node:http detaches an upgraded socket). For a WebSocket, `goAway` waits until both
 * directions sit between frames and sends each side a close frame 1001 before ending.
 */
export class Tunnel {
  readonly #client: Socket;
  readonly #upstream: Socket;
  readonly #options: TunnelOptions;
  readonly #metrics: TunnelMetrics;
  readonly #labels: { direction: string; upstream: string; kind: string };
  readonly #startedAt = performance.now();
  #up = 0;
  #down = 0;
  #ended = false;
  #reason: TunnelEnd = 'closed';
  /** Frame boundaries of each direction (WebSocket only; null for CONNECT). */
  readonly #toUpstream: FrameBoundaries | null;
  readonly #toClient: FrameBoundaries | null;
  #goingAway = false;
  readonly #onClosed: Array<() => void> = [];

  /**
   * @param clientHead bytes the client sent after its handshake (to forward first).
   * @param upstreamHead bytes the upstream sent after its answer (to forward first).
   */
  constructor(
    client: Socket,
    upstream: Socket,
    clientHead: Buffer,
    upstreamHead: Buffer,
    metrics: TunnelMetrics,
    options: TunnelOptions,
  ) {
    this.#client = client;
    this.#upstream = upstream;
    this.#options = options;
    this.#metrics = metrics;
    this.#labels = { direction: options.direction, upstream: options.upstream, kind: options.kind };
    // Half-close from here on: a FIN ends one direction and the pipe passes it on, while the other
    // still flows (a client that ends its sending still reads the answer). Readable streams read
    // this flag when their end comes; node:http's and TLS sockets are not half-open by default.
    // During the handshake a FIN still means the client left (TunnelExchange abandons it).
    client.allowHalfOpen = true;
    upstream.allowHalfOpen = true;
    const ws = options.kind === 'websocket';
    this.#toUpstream = ws ? new FrameBoundaries() : null;
    this.#toClient = ws ? new FrameBoundaries() : null;
    metrics.active.inc(this.#labels);

    client.on('data', (chunk: Buffer) => {
      this.#up += chunk.length;
      this.#toUpstream?.push(chunk);
      if (this.#goingAway) this.#tryGoAway();
    });
    upstream.on('data', (chunk: Buffer) => {
      this.#down += chunk.length;
      this.#toClient?.push(chunk);
      if (this.#goingAway) this.#tryGoAway();
    });
    const fail = (): void => this.#end('error');
    client.on('error', fail);
    upstream.on('error', fail);
    client.on('close', () => this.#end(this.#reason));
    upstream.on('close', () => this.#end(this.#reason));
    client.setTimeout(options.idleMs, () => {
      this.#reason = 'idle';
      this.#destroy();
    });
    if (upstreamHead.length > 0) {
      this.#down += upstreamHead.length;
      this.#toClient?.push(upstreamHead);
      client.write(upstreamHead);
    }
    if (clientHead.length > 0) {
      this.#up += clientHead.length;
      this.#toUpstream?.push(clientHead);
      upstream.write(clientHead);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
    upstream.resume();
  }

  /** Calls `cb` once the tunnel has ended. */
  onClosed(cb: () => void): void {
    if (this.#ended) cb();
    else this.#onClosed.push(cb);
  }

  /**
   * Ends the tunnel for a shutdown: a WebSocket gets close frames 1001 ("going away") both ways at
   * the next frame boundary, then both sockets end; any other tunnel (CONNECT, a raw upgrade) ends at once.
   */
  goAway(): void {
    if (this.#ended || this.#goingAway) return;
    this.#goingAway = true;
    this.#reason = 'drain';
    if (this.#toUpstream === null) this.#finish();
    else this.#tryGoAway();
  }

  /** Destroys both sockets now. */
  destroy(): void {
    this.#destroy();
  }

  #tryGoAway(): void {
    if (this.#ended || !this.#toUpstream!.atBoundary || !this.#toClient!.atBoundary) return;
    this.#client.unpipe(this.#upstream);
    this.#upstream.unpipe(this.#client);
    this.#client.write(closeFrame(GOING_AWAY, false));
    this.#upstream.write(closeFrame(GOING_AWAY, true));
    this.#finish();
  }

  /** Ends both sockets gracefully, destroying them if they linger. */
  #finish(): void {
    this.#client.end();
    this.#upstream.end();
    setTimeout(() => this.#destroy(), 1000).unref();
  }

  #destroy(): void {
    this.#client.destroy();
    this.#upstream.destroy();
  }

  #end(reason: TunnelEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#destroy();
    const m = this.#metrics;
    const seconds = (performance.now() - this.#startedAt) / 1000;
    m.active.dec(this.#labels);
    m.closed.inc({ ...this.#labels, reason });
    m.bytes.inc({ ...this.#labels, flow: 'upstream' }, this.#up);
    m.bytes.inc({ ...this.#labels, flow: 'downstream' }, this.#down);
    m.duration.observe({ kind: this.#options.kind }, seconds);
    this.#options.onEnd?.({ up: this.#up, down: this.#down, reason, seconds });
    for (const cb of this.#onClosed.splice(0)) cb();
  }
}

/** The live tunnels of a daemon: tracked so a drain can close them and wait for them. */
export class TunnelSet {
  readonly #live = new Set<Tunnel>();
  /** The tunnel metrics every tunnel of this daemon counts in. */
  readonly metrics: TunnelMetrics;

  constructor(metrics: TunnelMetrics) {
    this.metrics = metrics;
  }

  /** Tracks `tunnel` until it ends. */
  add(tunnel: Tunnel): void {
    this.#live.add(tunnel);
    tunnel.onClosed(() => this.#live.delete(tunnel));
  }

  get size(): number {
    return this.#live.size;
  }

  /** Asks every tunnel to go away (WebSocket close 1001); resolves when all have ended. */
  goAway(): Promise<void> {
    const all = [...this.#live].map((t) => new Promise<void>((resolve) => t.onClosed(resolve)));
    for (const t of this.#live) t.goAway();
    return Promise.all(all).then(() => undefined);
  }

  /** Destroys every tunnel. */
  destroy(): void {
    for (const t of this.#live) t.destroy();
  }
}
