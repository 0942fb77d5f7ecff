// An established tunnel: bytes both ways with backpressure, an idle timeout, and a clean close on drain.
import type { Socket } from 'node:net';
import type { TunnelEnd, TunnelKind, TunnelMetrics } from '../telemetry/tunnel-metrics.ts';
import { timerDelay } from '../resilience/timer-delay.ts';
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
  /** The drain's close frames went out (a WebSocket's goAway is done: what follows is only read). */
  #closeSent = false;
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

    // Counted as relayed, so not once the drain's close frames went out (what follows is dropped).
    client.on('data', (chunk: Buffer) => {
      if (this.#closeSent) return;
      this.#up += chunk.length;
      this.#toUpstream?.push(chunk);
      if (this.#goingAway) this.#tryGoAway();
    });
    upstream.on('data', (chunk: Buffer) => {
      if (this.#closeSent) return;
      this.#down += chunk.length;
      this.#toClient?.push(chunk);
      if (this.#goingAway) this.#tryGoAway();
    });
    const fail = (): void => this.#end('error');
    client.on('error', fail);
    upstream.on('error', fail);
    client.on('close', () => this.#end(this.#reason));
    upstream.on('close', () => this.#end(this.#reason));
    // Clamped: Node truncates a longer one itself, but warns (TimeoutOverflowWarning) per tunnel.
    client.setTimeout(timerDelay(options.idleMs), () => {
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
    if (this.#ended || this.#closeSent || !this.#toUpstream!.atBoundary || !this.#toClient!.atBoundary)
      return;
    this.#closeSent = true;
    this.#client.unpipe(this.#upstream);
    this.#upstream.unpipe(this.#client);
    // unpipe() pauses a stream left without a pipe: keep reading (and dropping) each side's answer
    // to the close and its FIN, so both sockets close when the peers do rather than at the 1 s cut.
    this.#client.resume();
    this.#upstream.resume();
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

/**
 * The live tunnels of a daemon: tracked so a drain can close them and wait for them. Once the drain
 * has begun ({@link goAway}), a tunnel whose handshake was still in flight goes away as it opens: it
 * would otherwise hold its connection (and the exit) until `shutdown.drainTimeout`.
 */
export class TunnelSet {
  readonly #live = new Set<Tunnel>();
  #goingAway = false;
  /** The tunnel metrics every tunnel of this daemon counts in. */
  readonly metrics: TunnelMetrics;

  constructor(metrics: TunnelMetrics) {
    this.metrics = metrics;
  }

  /** Tracks `tunnel` until it ends; during a drain it is asked to go away at once. */
  add(tunnel: Tunnel): void {
    this.#live.add(tunnel);
    tunnel.onClosed(() => this.#live.delete(tunnel));
    if (this.#goingAway) tunnel.goAway();
  }

  get size(): number {
    return this.#live.size;
  }

  /**
   * Asks every tunnel to go away (WebSocket close 1001), and any added from now on as it opens;
   * resolves when all live now have ended.
   */
  goAway(): Promise<void> {
    this.#goingAway = true;
    const all = [...this.#live].map((t) => new Promise<void>((resolve) => t.onClosed(resolve)));
    for (const t of this.#live) t.goAway();
    return Promise.all(all).then(() => undefined);
  }

  /** Destroys every tunnel. */
  destroy(): void {
    for (const t of this.#live) t.destroy();
  }
}
