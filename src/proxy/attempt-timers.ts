// Times one attempt to an endpoint (response headers in time, no idle gap in the response body) on Node's own timers.
import { timerDelay } from '../resilience/timer-delay.ts';
import { AttemptTimeoutError, IdleTimeoutError } from './upstream-failure.ts';

/**
 * The two timeouts of one attempt to an endpoint: its response headers within the per-try time,
 * then no gap between two response body chunks longer than the idle timeout. A response paused
 * because the client reads slowly is not idle: the gap counts only while meshlet wants data.
 * When one runs out, `expire` gets an error `classifyFailure` calls a `timeout`; it fires at most
 * once per {@link awaitHeaders} or {@link awaitBody}.
 *
 * meshlet does not hand these to undici (`headersTimeout`/`bodyTimeout` are 0 on its dispatches):
 * undici makes a timer object per request and phase and keeps it on a list it sweeps every ~0.5 s,
 * so every request's timers outlived two young-generation collections and were promoted. At 2,000
 * req/s that was ~180 of the ~290 bytes each request left in the old generation, and a full
 * mark-compact every few seconds. Node's timers leave their list when cleared and die young.
 */
export class AttemptTimers {
  /**
   * The error of the timeout that ran out in this attempt, else null: for an attempt undici had not
   * yet given a controller to abort when it fired.
   */
  expired: Error | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** The body's idle limit while the body is awaited, ms; 0 while headers are awaited or no limit. */
  #idleMs = 0;
  #paused = false;
  readonly #expire: (err: Error) => void;

  /** @param expire Cancels the attempt with the timeout's error. */
  constructor(expire: (err: Error) => void) {
    this.#expire = expire;
  }

  /**
   * Starts waiting for response headers, for `ms` milliseconds (rounded up to a whole one: Node keeps
   * one timer list per duration, and fractions would make one per request; at most 2^31 − 1, about
   * 24.8 days: a longer timeout, from `timeouts.request: 1000h`, would otherwise fire after 1 ms).
   */
  awaitHeaders(ms: number): void {
    this.stop();
    this.expired = null;
    const whole = Math.max(1, Math.ceil(timerDelay(ms)));
    this.#timer = setTimeout(AttemptTimers.#onHeadersTimeout, whole, this, whole);
  }

  /**
   * The headers arrived: from now on the body may not stay idle longer than `idleMs` (0: no limit;
   * at most 2^31 − 1 ms, as in {@link awaitHeaders}).
   */
  awaitBody(idleMs: number): void {
    this.stop();
    if (!(idleMs > 0)) return;
    this.#idleMs = timerDelay(idleMs);
    this.#timer = setTimeout(AttemptTimers.#onIdle, this.#idleMs, this);
  }

  /** Whether the attempt is waiting for response headers (its per-try timer runs). */
  get awaitingHeaders(): boolean {
    return this.#timer !== null && this.#idleMs === 0;
  }

  /** A body chunk arrived: the idle gap starts again. */
  touch(): void {
    if (this.#idleMs > 0) this.#timer?.refresh();
  }

  /** The response waits for the client to drain: the idle gap does not count until {@link resume}. */
  pause(): void {
    this.#paused = true;
  }

  /** The response flows again: the idle gap starts now. */
  resume(): void {
    this.#paused = false;
    this.touch();
  }

  /** The attempt ended (or moves on): no timer runs. */
  stop(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    this.#idleMs = 0;
    this.#paused = false;
  }

  static #onHeadersTimeout(timers: AttemptTimers, ms: number): void {
    timers.#timer = null;
    timers.expired = new AttemptTimeoutError(ms);
    timers.#expire(timers.expired);
  }

  static #onIdle(timers: AttemptTimers): void {
    const timer = timers.#timer;
    if (timer === null) return;
    if (timers.#paused) {
      timer.refresh();
      return;
    }
    const ms = timers.#idleMs;
    timers.#timer = null;
    timers.#idleMs = 0;
    timers.expired = new IdleTimeoutError(ms);
    timers.#expire(timers.expired);
  }
}
