// One blocking-query loop: index handling as Consul documents it, a query-rate floor, jittered backoff on errors.
import type { BlockingAnswer } from './consul-client.ts';

/**
 * The index to send next, given the one sent and the `X-Consul-Index` received (Consul's
 * "Blocking Queries: implementation details"): reset to 0 when it went backwards (a snapshot
 * restore or agent restart), never below 1 after an answer (an index of 0 would stop blocking).
 */
export function nextIndex(sent: number, received: number | undefined): number {
  if (received === undefined) return Math.max(1, sent);
  if (received < sent) return 0;
  return received < 1 ? 1 : received;
}

/**
 * Backoff before retry `attempt` (1-based), ms: exponential from `baseMs` up to `maxMs`, with equal
 * jitter (half fixed, half random) so that a fleet of meshlets does not retry in step.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(0, attempt - 1), 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Options of a {@link BlockingWatch}. */
export interface BlockingWatchOptions<T> {
  /** What is watched, for logs and status (`health:users`, `catalog`). */
  name: string;
  /** One blocking read at `index`. */
  fetch(index: number, signal: AbortSignal): Promise<BlockingAnswer<T>>;
  /**
   * Called with each answer whose index differs from the last one applied (and the first, and any
   * without an index). Throwing refuses the answer: it counts as a failed read (`onError`, backoff)
   * and the next read asks again at the index before it.
   */
  onAnswer(value: T): void;
  /** Called after each failed read, with the retry delay chosen. */
  onError(err: Error, retryInMs: number): void;
  /** Called after each successful read. */
  onSuccess(): void;
  /** Called when an answer's index went backwards (a snapshot restore or an agent that lost its state). */
  onIndexReset?(): void;
  /** Least time between the starts of two reads, ms: caps the rate when the index churns. Default 100. */
  minIntervalMs?: number;
  /** Backoff after errors, ms. Defaults 250 → 5000. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/**
 * Repeats a blocking read until stopped. The first read uses index 0 (answers at once); later reads
 * block until Consul's data changes or `wait` expires. Errors never stop the loop: it backs off and
 * tries again, keeping whatever was applied last.
 */
export class BlockingWatch<T> {
  readonly name: string;
  readonly #options: BlockingWatchOptions<T>;
  readonly #abort = new AbortController();
  #index = 0;
  #applied: number | undefined;
  #synced = false;
  #lastError: string | null = null;
  #sleepTimer: NodeJS.Timeout | null = null;
  /** Aborts the read in flight only (see `resync`). */
  #readAbort: AbortController | null = null;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;

  constructor(options: BlockingWatchOptions<T>) {
    this.name = options.name;
    this.#options = options;
  }

  /** True once one answer was applied. */
  get synced(): boolean {
    return this.#synced;
  }

  /** The index the next read sends. */
  get index(): number {
    return this.#index;
  }

  /** The last read's error message, or null after a success. */
  get lastError(): string | null {
    return this.#lastError;
  }

  /** Starts the loop (idempotent). */
  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * Starts over at index 0 at once: cancels a read that may be blocked on an index the server no
   * longer reaches (another watch saw the index go backwards).
   */
  resync(): void {
    this.#index = 0;
    this.#readAbort?.abort(new Error('resync'));
  }

  /** Stops the loop, cancelling a read in flight. Resolves when the loop has ended. */
  async stop(): Promise<void> {
    this.#abort.abort(new Error('watch stopped'));
    if (this.#sleepTimer !== null) clearTimeout(this.#sleepTimer);
    this.#wake?.();
    await this.#loop;
  }

  /** Records a failed read or a refused answer (the `failures`-th in a row) and waits out its backoff. */
  async #backOff(err: Error, failures: number, baseMs: number, maxMs: number): Promise<void> {
    const delay = backoffMs(failures, baseMs, maxMs);
    this.#lastError = err.message;
    this.#options.onError(err, delay);
    await this.#sleep(delay);
  }

  async #run(): Promise<void> {
    const { minIntervalMs = 100, backoffBaseMs = 250, backoffMaxMs = 5000 } = this.#options;
    const signal = this.#abort.signal;
    let failures = 0;
    let lastStart = Number.NEGATIVE_INFINITY;
    while (!signal.aborted) {
      const gap = lastStart + minIntervalMs - performance.now();
      if (gap > 0) await this.#sleep(gap);
      if (signal.aborted) break;
      lastStart = performance.now();
      let answer: BlockingAnswer<T>;
      const read = new AbortController();
      this.#readAbort = read;
      const forward = (): void => read.abort(signal.reason);
      signal.addEventListener('abort', forward, { once: true });
      try {
        answer = await this.#options.fetch(this.#index, read.signal);
      } catch (err) {
        if (signal.aborted) break;
        if (read.signal.aborted) continue; // resync: read again at index 0
        await this.#backOff(err as Error, ++failures, backoffBaseMs, backoffMaxMs);
        continue;
      } finally {
        signal.removeEventListener('abort', forward);
        this.#readAbort = null;
      }
      if (signal.aborted) break;
      const sent = this.#index;
      this.#index = nextIndex(sent, answer.index);
      if (sent > 0 && this.#index === 0) this.#options.onIndexReset?.();
      // Apply the first answer, any answer after a reset, any whose index moved, and any without an
      // index (nothing tells whether it changed).
      if (!this.#synced || sent === 0 || answer.index === undefined || answer.index !== this.#applied) {
        try {
          this.#options.onAnswer(answer.value);
        } catch (err) {
          // A refused answer (or a bug applying it) never ends the loop: what was applied last stays,
          // and the same index is read again after a backoff (0 after an index reset).
          if (this.#index !== 0) this.#index = sent;
          await this.#backOff(err as Error, ++failures, backoffBaseMs, backoffMaxMs);
          continue;
        }
        this.#applied = answer.index;
        this.#synced = true;
      }
      failures = 0;
      this.#lastError = null;
      this.#options.onSuccess();
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#sleepTimer = setTimeout(resolve, ms);
    });
  }
}
