// Refused inbound handshakes in the log: one warning per peer address and reason per window, so a scanner or a misconfigured peer cannot flood it.
import type { Logger } from '../telemetry/logger.ts';
import type { HandshakeFailureReason } from '../telemetry/tls-metrics.ts';

/** Options of {@link RefusalLog}. */
export interface RefusalLogOptions {
  /** How long a peer's refusals for one reason stay quiet after the warning, ms. Default 10 min. */
  readonly windowMs?: number;
  /** Most (peer, reason) pairs remembered; the oldest is forgotten first. Default 1024. */
  readonly maxPeers?: number;
  /** Clock, ms. Defaults to `Date.now`. */
  readonly now?: () => number;
}

interface Seen {
  /** When the last warning for this pair was written, ms. */
  readonly loggedAt: number;
  /** Refusals since then that were not logged. */
  suppressed: number;
}

/**
 * Writes `inbound tls handshake refused` at warn with the peer's address and the reason (the
 * metric label of `meshlet_tls_handshakes_total`) the first time a peer is refused for a reason,
 * then stays quiet for that pair for `windowMs`; the next warning after the window says how many
 * were left out (`suppressed`). The counter counts every refusal; this log tells an operator who.
 */
export class RefusalLog {
  readonly #logger: Logger;
  readonly #windowMs: number;
  readonly #maxPeers: number;
  readonly #now: () => number;
  readonly #seen = new Map<string, Seen>();

  constructor(logger: Logger, options: RefusalLogOptions = {}) {
    this.#logger = logger;
    this.#windowMs = options.windowMs ?? 600_000;
    this.#maxPeers = options.maxPeers ?? 1024;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Notes one refused handshake from `peer` (an address; undefined once the socket is gone).
   * `detail` is the TLS error or verification code (`CERT_HAS_EXPIRED`), never certificate
   * contents. Returns whether a line was written.
   */
  note(peer: string | undefined, reason: HandshakeFailureReason, detail?: string): boolean {
    const address = peer ?? 'unknown';
    const key = `${address} ${reason}`;
    const now = this.#now();
    const seen = this.#seen.get(key);
    if (seen !== undefined && now - seen.loggedAt < this.#windowMs) {
      seen.suppressed++;
      return false;
    }
    this.#seen.delete(key);
    if (this.#seen.size >= this.#maxPeers) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(key, { loggedAt: now, suppressed: 0 });
    this.#logger.warn({
      msg: 'inbound tls handshake refused',
      peer: address,
      reason,
      ...(detail === undefined || detail === '' ? {} : { detail }),
      ...(seen === undefined || seen.suppressed === 0 ? {} : { suppressed: seen.suppressed }),
    });
    return true;
  }
}
