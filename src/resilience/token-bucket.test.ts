import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { KeyedTokenBuckets, TokenBucket } from './token-bucket.ts';

describe('TokenBucket', () => {
  it('starts full, allows a burst, then refuses', () => {
    const clock = new ManualClock();
    const b = new TokenBucket({ ratePerSecond: 10, burst: 5, clock });
    for (let i = 0; i < 5; i++) expect(b.tryTake()).toBe(true);
    expect(b.tryTake()).toBe(false);
    expect(b.tokens).toBe(0);
  });

  it('refills at the rate, up to the burst', () => {
    const clock = new ManualClock();
    const b = new TokenBucket({ ratePerSecond: 10, burst: 5, clock });
    for (let i = 0; i < 5; i++) b.tryTake();
    clock.advance(100);
    expect(b.tryTake()).toBe(true);
    expect(b.tryTake()).toBe(false);
    clock.advance(60_000);
    expect(b.tokens).toBe(5);
  });

  it('sustains the rate over time', () => {
    const clock = new ManualClock();
    const b = new TokenBucket({ ratePerSecond: 100, burst: 10, clock });
    let taken = 0;
    for (let ms = 0; ms < 10_000; ms++) {
      while (b.tryTake()) taken++;
      clock.advance(1);
    }
    expect(taken).toBeGreaterThanOrEqual(1000);
    expect(taken).toBeLessThanOrEqual(1010);
  });

  it('takes several tokens at once, or none', () => {
    const b = new TokenBucket({ ratePerSecond: 1, burst: 3, clock: new ManualClock() });
    expect(b.tryTake(2)).toBe(true);
    expect(b.tryTake(2)).toBe(false);
    expect(b.tokens).toBe(1);
  });

  it('says how long until tokens are back', () => {
    const clock = new ManualClock();
    const b = new TokenBucket({ ratePerSecond: 4, burst: 2, clock });
    expect(b.retryAfterMs()).toBe(0);
    b.tryTake(2);
    expect(b.retryAfterMs()).toBe(250);
    expect(b.retryAfterMs(2)).toBe(500);
    expect(b.retryAfterMs(3)).toBe(Number.POSITIVE_INFINITY);
    clock.advance(100);
    expect(b.retryAfterMs()).toBe(150);
  });

  it('defaults the burst to the rate and refuses bad settings', () => {
    expect(new TokenBucket({ ratePerSecond: 2.5, clock: new ManualClock() }).tokens).toBe(3);
    expect(() => new TokenBucket({ ratePerSecond: 0 })).toThrow(/ratePerSecond/);
    expect(() => new TokenBucket({ ratePerSecond: 1, burst: 0.5 })).toThrow(/burst/);
  });
});

describe('KeyedTokenBuckets', () => {
  it('keeps a bucket per key', () => {
    const clock = new ManualClock();
    const k = new KeyedTokenBuckets({ ratePerSecond: 1, burst: 1, clock });
    expect(k.tryTake('a')).toBe(true);
    expect(k.tryTake('a')).toBe(false);
    expect(k.tryTake('b')).toBe(true);
    expect(k.retryAfterMs('a')).toBe(1000);
    expect(k.retryAfterMs('unknown')).toBe(0);
    clock.advance(1000);
    expect(k.tryTake('a')).toBe(true);
  });

  it('drops the least recently used key past maxKeys', () => {
    const k = new KeyedTokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys: 2, clock: new ManualClock() });
    k.tryTake('a');
    k.tryTake('b');
    k.tryTake('a'); // a is now most recent
    k.tryTake('c'); // drops b
    expect(k.size).toBe(2);
    expect(k.evictionsTotal).toBe(1);
    expect(k.tryTake('a')).toBe(false); // still tracked, still empty
    expect(k.tryTake('b')).toBe(true); // forgotten: starts full (and drops c)
    expect(k.tryTake('c')).toBe(true);
  });

  it('refuses a bad key bound', () => {
    expect(() => new KeyedTokenBuckets({ ratePerSecond: 1, maxKeys: 0 })).toThrow(/maxKeys/);
  });
});
