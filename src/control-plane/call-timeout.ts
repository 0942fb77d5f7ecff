// A control-plane call's time limit as an AbortSignal whose timer ends with the call: AbortSignal.timeout's lives until it fires.

/**
 * A call's time limit, joined with an optional outer signal (shutdown, a watch's resync). Unlike
 * `AbortSignal.timeout`, whose timer and signal stay alive until the timer fires even when the call
 * ended long before, {@link clear} stops the timer and lets both go at once: a Consul blocking query
 * is given wait + wait/16 + the call timeout (about 5 min 20 s by default), so under endpoint churn
 * every answered query kept ~1.1 KiB (signal, timer, their closures) alive for five minutes.
 * The signal aborts with the same reason `AbortSignal.timeout` gives (a `TimeoutError`
 * DOMException), or with the outer signal's reason.
 */
export class CallTimeout {
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;
  readonly #outer: AbortSignal | undefined;
  readonly #onOuter: (() => void) | undefined;

  /**
   * @param ms the call's time limit, ms.
   * @param outer aborts the call early when it aborts (its reason is passed on).
   */
  constructor(ms: number, outer?: AbortSignal) {
    const controller = this.#controller;
    this.#timer = setTimeout(
      () => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
      ms,
    );
    this.#timer.unref();
    this.#outer = outer;
    if (outer === undefined) return;
    if (outer.aborted) {
      controller.abort(outer.reason);
      return;
    }
    this.#onOuter = () => controller.abort(outer.reason);
    outer.addEventListener('abort', this.#onOuter, { once: true });
  }

  /** Aborts when the time is up or the outer signal aborts. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Ends the limit: the timer is cleared and the outer signal forgets this call. Idempotent. */
  clear(): void {
    clearTimeout(this.#timer);
    if (this.#onOuter !== undefined) this.#outer!.removeEventListener('abort', this.#onOuter);
  }
}
