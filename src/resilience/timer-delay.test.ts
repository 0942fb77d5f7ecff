import { describe, expect, it } from 'vitest';
import { MAX_TIMER_MS, timerDelay } from './timer-delay.ts';

describe('timerDelay', () => {
  it.each([
    [0, 0],
    [250, 250],
    [MAX_TIMER_MS, MAX_TIMER_MS],
    [3_600_000_000, MAX_TIMER_MS],
    [Number.POSITIVE_INFINITY, MAX_TIMER_MS],
    [-5, 0],
    [Number.NaN, 0],
  ])('%d ms → %d ms', (ms, expected) => {
    expect(timerDelay(ms)).toBe(expected);
  });

  it('a clamped delay does not fire at once (Node fires an overflowing one after 1 ms)', async () => {
    let fired = false;
    const t = setTimeout(() => (fired = true), timerDelay(3_600_000_000));
    await new Promise((r) => setTimeout(r, 30));
    clearTimeout(t);
    expect(fired).toBe(false);
  });
});
