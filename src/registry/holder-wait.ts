// Tells a crashed earlier run of this instance from another live instance holding its service ID: watch the holder for one TTL and one check interval (Consul, etcd, Redis).

/** What {@link HolderWait.see} makes of a claim: `first` and `waiting` (not decided yet), `decided` (another live instance's, or no holder). */
export type HolderVerdict = 'first' | 'waiting' | 'decided';

/** A service ID another instance holds, as a claim passed it: the ID and the holder's address and port. */
export interface HeldId {
  id: string;
  holder: { address: string; port: number };
}

/**
 * Tells a crashed earlier run of this instance from another live instance before calling a held ID a
 * collision. A pod re-created under the same name at a new address finds its predecessor's
 * registration (Consul) or record (etcd, Redis) under its default ID (the ID comes from the hostname,
 * which is the pod name), at another address and still live until its TTL runs out. Nothing the
 * registry shows tells it from a live namesake (pods of one name in two namespaces): the ID and
 * hostname are the same by construction, and a per-run marker would differ in both cases. Only the
 * expiry does: a dead owner's TTL check expires (Consul), its lease expires or its key's TTL runs out
 * (etcd, Redis) within one TTL, a live owner's is refreshed. So a holder first seen live is watched
 * for `graceMs` (one TTL and one check interval): if it expires meanwhile the ID is taken over;
 * still unexpired after that, it was refreshed since, so it is another live instance's (a collision).
 *
 * Meanwhile a default ID's instance is registered under its distinct ID `<id>-<address>` (no gap in
 * the catalog) and moves to the default ID once the holder expires; an ID `registry.serviceId` sets
 * has no such fallback, so that instance is not registered until the holder expires.
 *
 * A look the store does not answer starts the watch over ({@link interrupted}): only a holder seen
 * unexpired for the whole watch of a store that kept answering is a live instance.
 *
 * The watch ends for good with {@link end}: once this run holds its ID for good, a registration that
 * replaced it afterwards was made by a live instance, so it is a collision at once.
 */
export class HolderWait {
  /** How long a holder is watched, ms. */
  readonly graceMs: number;
  /** How much longer a watch that started over after an outage lasts, ms (see {@link interrupted}). */
  readonly renewalMs: number;
  /** `id@address:port` of the holder watched, or null. */
  #holder: string | null = null;
  /** When the holder was first seen (the answer's arrival, `performance.now()` ms). */
  #since = 0;
  #ended = false;
  /** A look at the holder failed since it was last seen: its watch starts over at its next answer. */
  #interrupted = false;
  /** How long the current holder is watched from {@link #since}, ms: `graceMs`, plus `renewalMs` after an outage. */
  #limit: number;

  /**
   * @param graceMs How long a live-looking holder is watched, ms: the registration's TTL plus its check interval.
   * @param renewalMs How much longer the watch lasts when it started over after an outage, ms: the
   *   longest the store may have put the holder's expiry off past a full TTL (etcd: one lease TTL).
   *   Default 0.
   */
  constructor(graceMs: number, renewalMs = 0) {
    this.graceMs = graceMs;
    this.renewalMs = renewalMs;
    this.#limit = graceMs;
  }

  /**
   * Judges a claim: `decided` when no live instance held a candidate (`passed` empty), when the
   * first one that did has been seen live for `graceMs`, or after {@link end}; else `first` (a
   * holder seen for the first time) or `waiting`. `askedAt` is when the claim's reads were sent,
   * `answeredAt` when they answered (`performance.now()`, ms): the holder must have stayed
   * unexpired from its first answer to a read sent `graceMs` later.
   */
  see(claim: { readonly passed: readonly HeldId[] }, askedAt: number, answeredAt: number): HolderVerdict {
    const first = claim.passed[0];
    if (first === undefined || this.#ended) {
      this.#holder = null;
      this.#interrupted = false;
      return 'decided';
    }
    const holder = `${first.id}@${first.holder.address}:${first.holder.port}`;
    if (holder !== this.#holder) {
      this.#holder = holder;
      this.#since = answeredAt;
      this.#interrupted = false;
      this.#limit = this.graceMs;
      return 'first';
    }
    if (this.#interrupted) {
      this.#interrupted = false;
      this.#since = answeredAt;
      this.#limit = this.graceMs + this.renewalMs;
      return 'waiting';
    }
    return askedAt - this.#since >= this.#limit ? 'decided' : 'waiting';
  }

  /**
   * The store did not answer a look at the holder (unreachable, restarting): the holder's expiry
   * may have been put off meanwhile without its owner refreshing it (an etcd member that becomes
   * leader, as after a restart, gives every lease its full TTL plus its election timeout again; a
   * Consul agent restarted with its data directory gives a TTL check its persisted status and a full
   * TTL from the restart), so its watch starts over at its next answer, for `graceMs` plus
   * `renewalMs` (no second warning). Nothing changes while no holder is watched.
   */
  interrupted(): void {
    if (this.#holder !== null && !this.#ended) this.#interrupted = true;
  }

  /** This run holds its ID for good: holders seen from now on are live instances (no more watching). */
  end(): void {
    this.#ended = true;
    this.#holder = null;
  }
}
