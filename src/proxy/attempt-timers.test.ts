import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AttemptTimers } from './attempt-timers.ts';
import { classifyFailure } from './upstream-failure.ts';

describe('AttemptTimers', () => {
  let expired: Error[];
  let timers: AttemptTimers;

  beforeEach(() => {
    vi.useFakeTimers();
    expired = [];
    timers = new AttemptTimers((err) => expired.push(err));
  });
  afterEach(() => {
    timers.stop();
    vi.useRealTimers();
  });

  it('expires once when no headers arrive in time, rounded up to a whole millisecond, as a timeout', () => {
    timers.awaitHeaders(99.2);
    vi.advanceTimersByTime(99);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired.map((e) => e.message)).toEqual(['no response headers within 100 ms']);
    expect(classifyFailure(expired[0]!, true)).toBe('timeout');
    vi.advanceTimersByTime(10_000);
    expect(expired).toHaveLength(1);
  });

  it('stops waiting for headers when the body is awaited, and bounds each gap between chunks', () => {
    timers.awaitHeaders(100);
    vi.advanceTimersByTime(90);
    timers.awaitBody(50);
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(40);
      timers.touch();
    }
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(50);
    expect(expired.map((e) => e.message)).toEqual(['response body idle for 50 ms']);
    expect((expired[0] as Error & { code: string }).code).toBe('MESHLET_IDLE_TIMEOUT');
    expect(classifyFailure(expired[0]!, true)).toBe('timeout');
  });

  it('does not count a pause for a slow client as idle, and restarts the gap on resume', () => {
    timers.awaitBody(50);
    vi.advanceTimersByTime(30);
    timers.pause();
    vi.advanceTimersByTime(500);
    expect(expired).toEqual([]);
    timers.resume();
    vi.advanceTimersByTime(49);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired).toHaveLength(1);
  });

  it('runs no timer for an idle limit of 0, nor after stop', () => {
    timers.awaitBody(0);
    timers.touch();
    vi.advanceTimersByTime(1e9);
    timers.awaitHeaders(10);
    timers.stop();
    timers.awaitBody(10);
    timers.stop();
    timers.touch();
    vi.advanceTimersByTime(1e9);
    expect(expired).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('AttemptTimers on real timers', () => {
  it('a timeout past 2^31 − 1 ms (timeouts.request: 1000h) does not fire after 1 ms', async () => {
    const expired: Error[] = [];
    const headers = new AttemptTimers((err) => expired.push(err));
    const body = new AttemptTimers((err) => expired.push(err));
    headers.awaitHeaders(3_600_000_000);
    body.awaitBody(3_600_000_000);
    await new Promise((r) => setTimeout(r, 40));
    headers.stop();
    body.stop();
    expect(expired.map((e) => e.message)).toEqual([]);
  });
});
