import { describe, expect, it } from 'vitest';
import { ExponentialBackoff, parseRetryAfterMs, retryAfterMs } from './backoff.ts';

describe('ExponentialBackoff', () => {
  it('defaults to Envoy’s 25 ms base and 250 ms cap', () => {
    const b = new ExponentialBackoff();
    expect(b.baseMs).toBe(25);
    expect(b.maxMs).toBe(250);
    expect([1, 2, 3, 4, 5, 100, 1e9].map((n) => b.ceiling(n))).toEqual([25, 75, 175, 250, 250, 250, 250]);
  });

  it('jitters fully between 0 and the ceiling', () => {
    expect(new ExponentialBackoff({ random: () => 0 }).delay(3)).toBe(0);
    expect(new ExponentialBackoff({ random: () => 0.5 }).delay(2)).toBe(37);
    expect(new ExponentialBackoff({ random: () => 0.999999 }).delay(10)).toBe(249);
    const b = new ExponentialBackoff();
    for (let i = 0; i < 1000; i++) {
      const d = b.delay(2);
      expect(d >= 0 && d < 75 && Number.isInteger(d)).toBe(true);
    }
  });

  it('treats attempts below 1 or fractional as whole attempts from 1', () => {
    const b = new ExponentialBackoff({ baseMs: 10, maxMs: 1000 });
    expect(b.ceiling(0)).toBe(10);
    expect(b.ceiling(-5)).toBe(10);
    expect(b.ceiling(Number.NaN)).toBe(10);
    expect(b.ceiling(2.7)).toBe(30);
  });

  it('raises the default cap to the base when the base is above 250 ms', () => {
    expect(new ExponentialBackoff({ baseMs: 1000 }).maxMs).toBe(1000);
  });

  it('refuses invalid bounds with a clear error', () => {
    expect(() => new ExponentialBackoff({ baseMs: 0 })).toThrow(/base must be a positive/);
    expect(() => new ExponentialBackoff({ baseMs: -1 })).toThrow(RangeError);
    expect(() => new ExponentialBackoff({ baseMs: Number.NaN })).toThrow(/base/);
    expect(() => new ExponentialBackoff({ baseMs: Number.POSITIVE_INFINITY })).toThrow(/base/);
    expect(() => new ExponentialBackoff({ baseMs: 100, maxMs: 50 })).toThrow(
      /max must be .* ≥ base \(100\), got 50/,
    );
    expect(() => new ExponentialBackoff({ maxMs: Number.POSITIVE_INFINITY })).toThrow(/max/);
  });
});

describe('parseRetryAfterMs', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('reads delay-seconds', () => {
    expect(parseRetryAfterMs('0', now)).toBe(0);
    expect(parseRetryAfterMs('120', now)).toBe(120_000);
    expect(parseRetryAfterMs(' 3 ', now)).toBe(3000);
  });

  it('reads an HTTP-date relative to the injected now', () => {
    expect(parseRetryAfterMs('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfterMs('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0);
  });

  it('returns undefined when absent or invalid', () => {
    for (const v of [undefined, null, '', '  ', '-1', '1.5', 'soon', '2026-01-01', 'Thu, 99 Foo 2026 GMT']) {
      expect(parseRetryAfterMs(v, now)).toBeUndefined();
    }
  });
});

describe('retryAfterMs', () => {
  const now = 1_000_000;

  it('clamps to the maximum and passes smaller delays through', () => {
    expect(retryAfterMs('1', now, 250)).toBe(250);
    expect(retryAfterMs('0', now, 250)).toBe(0);
    expect(retryAfterMs('2', now, 10_000)).toBe(2000);
  });

  it('returns undefined when the header is absent or invalid', () => {
    expect(retryAfterMs(undefined, now, 250)).toBeUndefined();
    expect(retryAfterMs('later', now, 250)).toBeUndefined();
  });
});
