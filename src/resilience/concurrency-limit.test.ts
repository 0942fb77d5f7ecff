import { describe, expect, it } from 'vitest';
import { ConcurrencyLimit } from './concurrency-limit.ts';

describe('ConcurrencyLimit', () => {
  it('defaults to Envoy’s 1024 requests, 1024 pending, 3 retries', () => {
    const l = new ConcurrencyLimit();
    expect([l.maxConcurrent, l.maxPending, l.maxRetries]).toEqual([1024, 1024, 3]);
  });

  it('admits up to the limit, counts overflows, and admits again after a release', () => {
    const l = new ConcurrencyLimit({ maxConcurrent: 2 });
    expect(l.tryAcquireRequest()).toBe(true);
    expect(l.tryAcquireRequest()).toBe(true);
    expect(l.tryAcquireRequest()).toBe(false);
    expect(l.activeRequests).toBe(2);
    expect(l.overflowTotal).toEqual({ request: 1, pending: 0, retry: 0 });
    l.releaseRequest();
    expect(l.tryAcquireRequest()).toBe(true);
  });

  it('limits pending requests and retries separately', () => {
    const l = new ConcurrencyLimit({ maxPending: 1, maxRetries: 3 });
    expect(l.tryAcquirePending()).toBe(true);
    expect(l.tryAcquirePending()).toBe(false);
    for (let i = 0; i < 3; i++) expect(l.tryAcquireRetry()).toBe(true);
    expect(l.tryAcquireRetry()).toBe(false);
    expect(l.tryAcquireRequest()).toBe(true);
    expect(l.overflowTotal).toEqual({ request: 0, pending: 1, retry: 1 });
    expect([l.activeRequests, l.pendingRequests, l.activeRetries]).toEqual([1, 1, 3]);
    l.releasePending();
    l.releaseRetry();
    expect([l.pendingRequests, l.activeRetries]).toEqual([0, 2]);
  });

  it('allows retries beyond maxRetries by the share the caller passes', () => {
    const l = new ConcurrencyLimit({ maxRetries: 1 });
    expect(l.tryAcquireRetry(2)).toBe(true);
    expect(l.tryAcquireRetry(2)).toBe(true);
    expect(l.tryAcquireRetry(2)).toBe(true);
    expect(l.tryAcquireRetry(2)).toBe(false);
    expect(l.tryAcquireRetry()).toBe(false);
    expect(l.overflowTotal.retry).toBe(2);
  });

  it('ignores a release with nothing held', () => {
    const l = new ConcurrencyLimit();
    l.releaseRequest();
    l.releasePending();
    l.releaseRetry();
    expect([l.activeRequests, l.pendingRequests, l.activeRetries]).toEqual([0, 0, 0]);
  });

  it('refuses limits that are not positive integers', () => {
    expect(() => new ConcurrencyLimit({ maxConcurrent: 0 })).toThrow(
      /maxConcurrent must be a positive integer/,
    );
    expect(() => new ConcurrencyLimit({ maxRetries: 1.5 })).toThrow(/maxRetries/);
  });

  it('allows maxRetries 0 (config’s minimum): no retry is admitted', () => {
    const l = new ConcurrencyLimit({ maxRetries: 0 });
    expect(l.tryAcquireRetry()).toBe(false);
    expect(l.overflowTotal.retry).toBe(1);
  });

  it('configure lowers a maximum in place: held slots stay, are released into the same counters, and new acquires wait under the new maximum', () => {
    const l = new ConcurrencyLimit({ maxConcurrent: 3 });
    for (let i = 0; i < 3; i++) expect(l.tryAcquireRequest()).toBe(true);
    l.configure({ maxConcurrent: 1 });
    expect(l.maxConcurrent).toBe(1);
    expect(l.activeRequests).toBe(3);
    expect(l.tryAcquireRequest()).toBe(false);
    l.releaseRequest();
    l.releaseRequest();
    expect(l.tryAcquireRequest()).toBe(false); // one still held: at the new maximum
    l.releaseRequest();
    expect(l.activeRequests).toBe(0);
    expect(l.tryAcquireRequest()).toBe(true);
    expect(l.overflowTotal.request).toBe(2);
  });

  it('configure raises maxima and resets left-out ones to their defaults', () => {
    const l = new ConcurrencyLimit({ maxConcurrent: 1, maxPending: 1, maxRetries: 1 });
    expect(l.tryAcquirePending()).toBe(true);
    l.configure({ maxPending: 2 });
    expect([l.maxConcurrent, l.maxPending, l.maxRetries]).toEqual([1024, 2, 3]);
    expect(l.pendingRequests).toBe(1);
    expect(l.tryAcquirePending()).toBe(true);
    expect(l.tryAcquirePending()).toBe(false);
  });

  it('configure with an invalid limit throws and changes nothing', () => {
    const l = new ConcurrencyLimit({ maxConcurrent: 2, maxPending: 5 });
    expect(() => l.configure({ maxConcurrent: 4, maxPending: 0 })).toThrow(/maxPending/);
    expect([l.maxConcurrent, l.maxPending]).toEqual([2, 5]);
  });
});
