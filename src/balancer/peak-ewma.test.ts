import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { PeakEwmaBalancer } from './peak-ewma.ts';

const handles = (n: number) =>
  Array.from({ length: n }, (_, i) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000 + i)));

const lcg = (seed: number) => () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
};

describe('PeakEwmaBalancer', () => {
  it('returns undefined with no endpoints', () => {
    expect(new PeakEwmaBalancer().pick(undefined, undefined)).toBeUndefined();
  });

  it('rejects a bad decay or default RTT', () => {
    expect(() => new PeakEwmaBalancer({ decayMs: 0 })).toThrow(/decayMs/);
    expect(() => new PeakEwmaBalancer({ defaultRttMs: Number.NaN })).toThrow(/defaultRttMs/);
  });

  it('starts endpoints without data at the default RTT and keeps estimates across updates', () => {
    const clock = new ManualClock(1000);
    const lb = new PeakEwmaBalancer({ clock });
    const eps = handles(2);
    lb.update(eps);
    expect(eps[0]!.ewmaMs).toBe(30);
    expect(lb.cost(eps[0]!)).toBe(30);
    eps[0]!.active = 2;
    expect(lb.cost(eps[0]!)).toBe(90);
    lb.observe(eps[1]!, 80);
    lb.update([eps[1]!]);
    expect(eps[1]!.ewmaMs).toBe(80);
  });

  it('takes peaks at once and decays toward lower latencies with the time constant', () => {
    const clock = new ManualClock();
    const lb = new PeakEwmaBalancer({ clock, decayMs: 10_000 });
    const [h] = handles(1);
    lb.update([h!]);
    lb.observe(h!, 200);
    expect(h!.ewmaMs).toBe(200);
    clock.advance(10_000);
    // The unobserved estimate reads as decayed by e^-1.
    expect(lb.cost(h!)).toBeCloseTo(200 / Math.E, 6);
    lb.observe(h!, 10);
    expect(h!.ewmaMs).toBeCloseTo(200 / Math.E + 10 * (1 - 1 / Math.E), 6);
    lb.observe(h!, 500);
    expect(h!.ewmaMs).toBe(500);
  });

  it('weighs load: cost is latency × (active + 1)', () => {
    const clock = new ManualClock();
    const lb = new PeakEwmaBalancer({ clock });
    const eps = handles(2);
    lb.update(eps);
    lb.observe(eps[0]!, 10);
    lb.observe(eps[1]!, 40);
    eps[0]!.active = 5; // 10 × 6 = 60 > 40 × 1
    for (let i = 0; i < 20; i++) expect(lb.pick(undefined, undefined)).toBe(eps[1]);
  });

  it('sends far less to a 10× slower endpoint', () => {
    const clock = new ManualClock();
    const lb = new PeakEwmaBalancer({ clock, random: lcg(1) });
    const eps = handles(3);
    const latency = new Map([
      [eps[0]!, 10],
      [eps[1]!, 10],
      [eps[2]!, 100],
    ]);
    lb.update(eps);
    const counts = new Map<EndpointHandle, number>();
    for (let i = 0; i < 30_000; i++) {
      const h = lb.pick(undefined, undefined)!;
      counts.set(h, (counts.get(h) ?? 0) + 1);
      clock.advance(1);
      lb.observe(h, latency.get(h)!);
    }
    const slow = counts.get(eps[2]!) ?? 0;
    const fast = Math.min(counts.get(eps[0]!) ?? 0, counts.get(eps[1]!) ?? 0);
    expect(slow).toBeGreaterThan(0);
    expect(slow * 10).toBeLessThan(fast);
  });

  it('skips the endpoint to avoid even when it is the cheapest', () => {
    const lb = new PeakEwmaBalancer({ clock: new ManualClock() });
    const eps = handles(2);
    lb.update(eps);
    lb.observe(eps[1]!, 500);
    expect(lb.pick(undefined, undefined)).toBe(eps[0]);
    expect(lb.pick(undefined, eps[0])).toBe(eps[1]);
  });
});
