// The one access line of one tunnel: what is known at its handshake, completed and written once when it ends or is refused.
import { type AccessLog, elapsedMs, type TunnelAccessLine } from '../telemetry/access-log.ts';
import type { TunnelEnd } from '../telemetry/tunnel-metrics.ts';

/** What a tunnel's line says that is known when its handshake arrives. */
export type TunnelLineStart = Omit<
  TunnelAccessLine,
  'status' | 'durationMs' | 'bytesReceived' | 'bytesSent' | 'closeReason' | 'error' | 'attempts' | 'endpoint'
>;

/** How the tunnel went: its status and what else the line says. */
export interface TunnelLineEnd {
  readonly status: number;
  readonly error?: string | undefined;
  readonly endpoint?: string | null | undefined;
  readonly attempts?: number | undefined;
  /** An established tunnel's traffic and end: bytes from the client (`up`) and to it (`down`). */
  readonly relayed?: { readonly up: number; readonly down: number; readonly reason: TunnelEnd } | undefined;
}

/**
 * One tunnel's access line ({@link AccessLog.tunnel}), as Envoy logs one entry per upgraded stream:
 * written once — at once for a handshake that opened nothing, at the end for an established
 * tunnel — with the duration from the handshake's arrival. Later calls are ignored.
 */
export class TunnelAccess {
  readonly #access: AccessLog;
  readonly #start: TunnelLineStart;
  readonly #startedAt = performance.now();
  #written = false;

  constructor(access: AccessLog, start: TunnelLineStart) {
    this.#access = access;
    this.#start = start;
  }

  /** Writes the line (once). */
  write(end: TunnelLineEnd): void {
    if (this.#written) return;
    this.#written = true;
    const relayed = end.relayed;
    this.#access.tunnel({
      ...this.#start,
      status: end.status,
      error: end.error,
      endpoint: end.endpoint,
      attempts: end.attempts,
      durationMs: elapsedMs(this.#startedAt),
      bytesReceived: relayed?.up,
      bytesSent: relayed?.down,
      closeReason: relayed?.reason,
    });
  }
}
