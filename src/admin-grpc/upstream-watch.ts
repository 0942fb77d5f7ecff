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
  #timer: NodeJS.Timeout | null = null;
  #last = '';

  constructor(read: () => UpstreamMessage[]) {
    this.#read = read;
  }

  /** Adds a watcher and sends it the current snapshot; returns the function that removes it. */
  add(sink: SnapshotSink): () => void {
    const upstreams = this.#read();
    if (this.#sinks.size === 0) this.#last = fingerprint(upstreams);
    this.#sinks.add(sink);
    sink({ upstreams, atUnixMs: Date.now() });
    this.#timer ??= setInterval(() => this.#check(), WATCH_POLL_MS);
    this.#timer.unref();
    return () => {
      this.#sinks.delete(sink);
      if (this.#sinks.size === 0 && this.#timer !== null) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    };
  }

  /** Stops polling and forgets every watcher. */
  close(): void {
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
