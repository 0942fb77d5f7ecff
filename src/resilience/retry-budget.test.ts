import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { RetryBudget } from './retry-budget.ts';

describe('RetryBudget', () => {
  it('defaults to 20% of requests plus 10 retries/s over 10 s', () => {
    const b = new RetryBudget({ clock: new ManualClock() });
    expect(b.ratio).toBe(0.2);
    expect(b.minRetriesPerSecond).toBe(10);
    expect(b.windowMs).toBe(10_000);
    expect(b.limit).toBe(100);
  });

  it('allows the floor with no traffic, then refuses', () => {
    const b = new RetryBudget({ clock: new ManualClock(), minRetriesPerSecond: 1, windowMs: 5000 });
    for (let i = 0; i < 5; i++) expect(b.tryRetry()).toBe(true);
    expect(b.canRetry()).toBe(false);
    expect(b.tryRetry()).toBe(false);
    expect(b.refusedTotal).toBe(2);
    expect(b.retries).toBe(5);
  });

  it('keeps upstream attempts within 1.2 × requests plus the floor when everything fails', () => {
    const clock = new ManualClock();
    const b = new RetryBudget({ clock });
    let requests = 0;
    let attempts = 0;
    // 50 s of 100 req/s, each retried up to twice, all failing.
    for (let ms = 0; ms < 50_000; ms += 10) {
      b.onRequest();
      requests += 1;
      attempts += 1;
      for (let retry = 0; retry < 2 && b.tryRetry(); retry++) attempts += 1;
      expect(b.retries).toBeLessThanOrEqual(b.limit);
      clock.advance(10);
    }
    const floor = 10 * 50; // 10/s over the run
    expect(attempts).toBeLessThanOrEqual(1.2 * requests + floor);
    expect(attempts).toBeGreaterThan(1.15 * requests);
  });

  it('forgets requests and retries once the window slides past them', () => {
    const clock = new ManualClock();
    const b = new RetryBudget({ clock, ratio: 0.5, minRetriesPerSecond: 0, windowMs: 1000, buckets: 10 });
    expect(b.canRetry()).toBe(false);
    for (let i = 0; i < 4; i++) b.onRequest();
    expect(b.tryRetry()).toBe(true);
    expect(b.tryRetry()).toBe(true);
    expect(b.tryRetry()).toBe(false);
    clock.advance(500);
    for (let i = 0; i < 2; i++) b.onRequest();
    expect(b.requests).toBe(6);
    expect(b.tryRetry()).toBe(true);
    clock.advance(500); // the first 4 requests and 2 retries fall out
    expect(b.requests).toBe(2);
    expect(b.retries).toBe(1);
    expect(b.canRetry()).toBe(false);
    clock.advance(60_000);
    expect(b.requests).toBe(0);
    expect(b.retries).toBe(0);
  });

  it('refuses bad options with a clear error', () => {
    expect(() => new RetryBudget({ ratio: -0.1 })).toThrow(/ratio/);
    expect(() => new RetryBudget({ minRetriesPerSecond: Number.NaN })).toThrow(/minRetriesPerSecond/);
    expect(() => new RetryBudget({ windowMs: 0 })).toThrow(/window/);
    expect(() => new RetryBudget({ buckets: 2.5 })).toThrow(/buckets/);
  });
});
