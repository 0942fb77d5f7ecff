// Refusals in the log without flooding it: one warning per key (peer and reason, caller and reason) per window, then how many were left out.
import type { Logger } from '../telemetry/logger.ts';
import type { HandshakeFailureReason } from '../telemetry/tls-metrics.ts';

/** Options of {@link RefusalLog}. */
export interface RefusalLogOptions {
  /** The warning's `msg`. Default `inbound tls handshake refused`. */
  readonly msg?: string;
  /** How long one key's refusals stay quiet after its warning, ms. Default 10 min. */
  readonly windowMs?: number;
  /** Most keys remembered; the oldest is forgotten first (and then warned about again). Default 1024. */
  readonly maxKeys?: number;
  /** Clock, ms. Defaults to `Date.now`. */
  readonly now?: () => number;
}

interface Seen {
  /** When the last warning for this key was written, ms. */
  readonly loggedAt: number;
  /** Refusals since then that were not logged. */
  suppressed: number;
}

/**
 * Writes one warning (`msg`, with the fields the caller gives) the first time a key is refused, then
 * stays quiet for that key for `windowMs`; the next warning after the window says how many were left
 * out (`suppressed`). The counters count every refusal; this log tells an operator who and why.
 * Two uses: refused inbound handshakes, keyed by peer address and reason ({@link note}), and callers
 * refused by authorization, keyed by SPIFFE ID and reason ({@link record}).
 */
export class RefusalLog {
  readonly #logger: Logger;
  readonly #msg: string;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #seen = new Map<string, Seen>();

  constructor(logger: Logger, options: RefusalLogOptions = {}) {
    this.#logger = logger;
    this.#msg = options.msg ?? 'inbound tls handshake refused';
    this.#windowMs = options.windowMs ?? 600_000;
    this.#maxKeys = options.maxKeys ?? 1024;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Notes one refused handshake from `peer` (an address; undefined once the socket is gone):
   * `{peer, reason, detail}`, keyed by peer and reason. `reason` is the label of
   * `meshlet_tls_handshakes_total`; `detail` the TLS error or verification code (`CERT_HAS_EXPIRED`)
   * or why the certificate names no usable identity (`2 URI SANs…`). Returns whether a line was written.
   */
  note(peer: string | undefined, reason: HandshakeFailureReason, detail?: string): boolean {
    const address = peer ?? 'unknown';
    return this.record(`${address} ${reason}`, {
      peer: address,
      reason,
      ...(detail === undefined || detail === '' ? {} : { detail }),
    });
  }

  /**
   * Notes one refusal under `key`; writes `fields` at warn (plus `suppressed` when refusals of this
   * key were left out since its last warning) unless the key was warned about within the window.
   * Returns whether a line was written.
   */
  record(key: string, fields: Readonly<Record<string, unknown>>): boolean {
    const now = this.#now();
    const seen = this.#seen.get(key);
    if (seen !== undefined && now - seen.loggedAt < this.#windowMs) {
      seen.suppressed++;
      return false;
    }
    this.#seen.delete(key);
    if (this.#seen.size >= this.#maxKeys) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(key, { loggedAt: now, suppressed: 0 });
    this.#logger.warn({
      msg: this.#msg,
      ...fields,
      ...(seen === undefined || seen.suppressed === 0 ? {} : { suppressed: seen.suppressed }),
    });
    return true;
  }
}
