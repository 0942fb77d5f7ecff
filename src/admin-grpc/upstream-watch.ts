// WatchUpstreams: one snapshot now, then one on every change, to each watcher (polled only while someone watches).
import type { UpstreamMessage } from './upstream-messages.ts';
import { fingerprint } from './upstream-messages.ts';

/** How often the upstreams are compared with the last snapshot while a watcher is connected, ms. */
export const WATCH_POLL_MS = 20;

/** A watcher: receives each snapshot. */
export type SnapshotSink = (snapshot: { upstreams: UpstreamMessage[]; atUnixMs: number }) => void;

/**
 * Sends snapshots of `read()` to watchers: at once when one joins, then whenever the
 * {@link fingerprint} changes. The comparison costs one walk of the upstream table every
 * {@link WATCH_POLL_MS} ms, and only while at least one watcher is connected.
 */
export class UpstreamWatch {
  readonly #read: () => UpstreamMessage[];
  readonly #sinks = new Set<SnapshotSink>();
  /** Each watcher's end, called by {@link close}. */
  readonly #ends = new Map<SnapshotSink, () => void>();
  #timer: NodeJS.Timeout | null = null;
  #last = '';

  constructor(read: () => UpstreamMessage[]) {
    this.#read = read;
  }

  /** Watchers connected now. */
  get size(): number {
    return this.#sinks.size;
  }

  /**
   * Adds a watcher and sends it the current snapshot; returns the function that removes it.
   * `end` is called when the watch closes (the server shuts down).
   */
  add(sink: SnapshotSink, end?: () => void): () => void {
    const upstreams = this.#read();
    if (this.#sinks.size === 0) this.#last = fingerprint(upstreams);
    this.#sinks.add(sink);
    if (end !== undefined) this.#ends.set(sink, end);
    sink({ upstreams, atUnixMs: Date.now() });
    this.#timer ??= setInterval(() => this.#check(), WATCH_POLL_MS);
    this.#timer.unref();
    return () => {
      this.#sinks.delete(sink);
      this.#ends.delete(sink);
      if (this.#sinks.size === 0 && this.#timer !== null) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    };
  }

  /** Stops polling, ends every watcher and forgets it. */
  close(): void {
    const ends = [...this.#ends.values()];
    this.#ends.clear();
    for (const end of ends) end();
    this.#sinks.clear();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  #check(): void {
    const upstreams = this.#read();
    const print = fingerprint(upstreams);
    if (print === this.#last) return;
    this.#last = print;
    const snapshot = { upstreams, atUnixMs: Date.now() };
    for (const sink of this.#sinks) sink(snapshot);
  }
}
