import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { ADMITTED, type BreakerState, REFUSED, TRIAL, UpstreamBreaker } from './circuit-breaker.ts';

const options = { errorThresholdPercentage: 50, volumeThreshold: 4, resetTimeout: 20, rollingWindow: 10_000 };

describe('UpstreamBreaker', () => {
  const made: UpstreamBreaker[] = [];
  const breaker = (states: BreakerState[] = []) => {
    const b = new UpstreamBreaker(options, (s) => states.push(s), new ManualClock());
    made.push(b);
    return b;
  };
  afterEach(() => made.splice(0).forEach((b) => b.shutdown()));

  it('opens once the failure percentage passes the threshold after the volume threshold', () => {
    const states: BreakerState[] = [];
    const b = breaker(states);
    b.settle(b.admit(), false);
    b.settle(b.admit(), false);
    b.settle(b.admit(), true);
    expect(b.state).toBe('closed'); // 3 < volume threshold
    b.settle(b.admit(), false); // 3 of 4 failed
    expect(b.state).toBe('open');
    expect(states).toEqual(['open']);
    expect(b.admit()).toBe(REFUSED);
  });

  it('stays closed while failures stay at or below the threshold', () => {
    const b = breaker();
    for (let i = 0; i < 20; i++) b.settle(b.admit(), i % 2 === 0);
    expect(b.state).toBe('closed');
  });

  it('after the reset timeout lets exactly one trial through; success closes, failure reopens', async () => {
    const states: BreakerState[] = [];
    const b = breaker(states);
    for (let i = 0; i < 4; i++) b.settle(b.admit(), false);
    await new Promise((r) => setTimeout(r, 40));
    expect(b.state).toBe('half_open');
    const trial = b.admit();
    expect(trial).toBe(TRIAL);
    expect(b.admit()).toBe(REFUSED);
    b.settle(trial, false);
    expect(b.state).toBe('open');
    await new Promise((r) => setTimeout(r, 40));
    const second = b.admit();
    expect(second).toBe(TRIAL);
    b.settle(second, true);
    expect(b.state).toBe('closed');
    expect(b.admit()).toBe(ADMITTED);
    expect(states).toEqual(['open', 'half_open', 'open', 'half_open', 'closed']);
  });

  it('a reset timeout past 2^31 − 1 ms (resetTimeout: 1000h) keeps it open, at start and after configure', async () => {
    const huge = { ...options, resetTimeout: 3_600_000_000 };
    const b = new UpstreamBreaker(huge, () => {}, new ManualClock());
    made.push(b);
    for (let i = 0; i < 4; i++) b.settle(b.admit(), false);
    const c = breaker();
    c.configure(huge);
    for (let i = 0; i < 4; i++) c.settle(c.admit(), false);
    await new Promise((r) => setTimeout(r, 40));
    expect([b.state, c.state]).toEqual(['open', 'open']);
    expect(b.admit()).toBe(REFUSED);
  });

  it('reset() closes an open breaker', () => {
    const b = breaker();
    for (let i = 0; i < 4; i++) b.settle(b.admit(), false);
    expect(b.state).toBe('open');
    b.reset();
    expect(b.state).toBe('closed');
    expect(b.admit()).toBe(ADMITTED);
  });

  it('configure: new thresholds apply from the next outcome, keeping the outcomes counted', () => {
    const b = breaker();
    b.settle(b.admit(), false);
    b.settle(b.admit(), false);
    b.settle(b.admit(), true);
    b.configure({ ...options, errorThresholdPercentage: 90 });
    b.settle(b.admit(), false);
    expect(b.state).toBe('closed'); // 3 of 4 failed: 75 % opened at 50, not at 90
    b.configure({ ...options, volumeThreshold: 6 });
    b.settle(b.admit(), false);
    expect(b.state).toBe('closed'); // 5 requests: under the new volume threshold
    b.settle(b.admit(), false);
    expect(b.state).toBe('open');
  });

  it('configure keeps an open breaker open; a new reset timeout applies from the next opening', async () => {
    const states: BreakerState[] = [];
    const b = breaker(states);
    for (let i = 0; i < 4; i++) b.settle(b.admit(), false);
    b.configure({ ...options, resetTimeout: 5000 });
    expect(b.state).toBe('open');
    expect(b.admit()).toBe(REFUSED);
    await new Promise((r) => setTimeout(r, 40)); // the old 20 ms timer still runs
    const trial = b.admit();
    expect(trial).toBe(TRIAL);
    b.settle(trial, false);
    await new Promise((r) => setTimeout(r, 60));
    expect(b.state).toBe('open'); // now 5 s
    expect(states).toEqual(['open', 'half_open', 'open']);
  });

  it('configure with a new rolling window drops the outcomes counted so far', () => {
    const b = breaker();
    for (let i = 0; i < 3; i++) b.settle(b.admit(), false);
    b.configure({ ...options, rollingWindow: 20_000 });
    b.settle(b.admit(), false);
    expect(b.state).toBe('closed'); // 1 request in the new window, under the volume threshold
    for (let i = 0; i < 3; i++) b.settle(b.admit(), false);
    expect(b.state).toBe('open');
  });
});
