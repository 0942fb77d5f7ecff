// Keeps a delay within what Node's setTimeout honours: more than 2^31 − 1 ms (or NaN) would fire after 1 ms.

/**
 * The longest delay Node's `setTimeout` honours, ms: 2^31 − 1, about 24.8 days. A longer one (a
 * `timeouts.request: 1000h`, a `resetTimeout` of months) is not refused: Node warns
 * (TimeoutOverflowWarning) and fires it after 1 ms, which turns "practically never" into "at once".
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `ms` as a delay `setTimeout` honours: clamped to [0, {@link MAX_TIMER_MS}]. Infinity gives the
 * maximum (24.8 days stand for "never" on a request path), NaN and negatives give 0.
 */
export function timerDelay(ms: number): number {
  if (ms > MAX_TIMER_MS) return MAX_TIMER_MS;
  return ms > 0 ? ms : 0;
}
