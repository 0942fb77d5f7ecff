import { describe, expect, it } from 'vitest';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { isPrime, MaglevBalancer } from './maglev.ts';

const handles = (n: number, weights: number[] = []) =>
  Array.from(
    { length: n },
    (_, i) => new EndpointHandle(makeEndpoint(`10.0.0.${i + 1}`, 8080, { weight: weights[i] ?? 1 })),
  );

const keys = Array.from({ length: 10_000 }, (_, i) => `session-${i}`);

const assign = (lb: MaglevBalancer) => keys.map((k) => lb.pick(k, undefined));

describe('MaglevBalancer', () => {
  it('returns undefined with no endpoints', () => {
    expect(new MaglevBalancer().pick('k', undefined)).toBeUndefined();
  });

  it('defaults to a 65537-slot table and accepts only primes', () => {
    expect(new MaglevBalancer().tableSize).toBe(65537);
    expect(new MaglevBalancer({ tableSize: 251 }).tableSize).toBe(251);
    expect(() => new MaglevBalancer({ tableSize: 65536 })).toThrow(/prime/);
    expect(() => new MaglevBalancer({ tableSize: 5_000_101 })).toThrow(/5,000,011|5000011/);
  });

  it('fills every slot, each endpoint within 2% of its weight’s share', () => {
    const lb = new MaglevBalancer();
    lb.update(handles(3, [1, 2, 1]));
    const counts = lb.slotCounts();
    expect(counts.reduce((a, b) => a + b, 0)).toBe(65537);
    expect(counts[0]! / 65537).toBeCloseTo(0.25, 1);
    expect(counts[1]! / 65537).toBeCloseTo(0.5, 1);
    expect(Math.abs(counts[1]! / 65537 - 0.5)).toBeLessThan(0.02);
    lb.update(handles(5));
    for (const c of lb.slotCounts()) expect(Math.abs(c / 65537 - 0.2)).toBeLessThan(0.02);
  });

  it('sends the same key to the same endpoint whatever the order of endpoints', () => {
    const eps = handles(5);
    const a = new MaglevBalancer();
    const b = new MaglevBalancer();
    a.update(eps);
    b.update([...eps].reverse());
    for (const k of keys.slice(0, 500)) {
      const first = a.pick(k, undefined);
      expect(a.pick(k, undefined)).toBe(first);
      expect(b.pick(k, undefined)).toBe(first);
    }
  });

  it('keeps at least 65% of keys on their endpoint when a fourth joins three', () => {
    const eps = handles(4);
    const lb = new MaglevBalancer();
    lb.update(eps.slice(0, 3));
    const before = assign(lb);
    lb.update(eps);
    const after = assign(lb);
    const kept = before.filter((h, i) => after[i] === h).length / keys.length;
    expect(kept).toBeGreaterThanOrEqual(0.65);
    expect(after.filter((h) => h === eps[3]).length / keys.length).toBeCloseTo(0.25, 1);
  });

  it('walks to another endpoint when the key’s own is avoided or ejected, keeping other keys', () => {
    const eps = handles(4);
    const lb = new MaglevBalancer();
    lb.update(eps);
    const before = assign(lb);
    const target = eps[2]!;
    for (let i = 0; i < 2000; i++) {
      const again = lb.pick(keys[i], target);
      if (before[i] === target) expect(again).not.toBe(target);
      else expect(again).toBe(before[i]);
    }
    target.ejected = true;
    const moved = assign(lb);
    for (let i = 0; i < keys.length; i++) {
      if (before[i] === target) expect(moved[i]).not.toBe(target);
      else expect(moved[i]).toBe(before[i]);
    }
    expect(new Set(moved.filter((_, i) => before[i] === target)).size).toBe(3);
  });

  it('falls back to an ejected endpoint only when nothing else remains', () => {
    const eps = handles(2);
    const lb = new MaglevBalancer({ tableSize: 13 });
    lb.update(eps);
    eps[0]!.ejected = true;
    eps[1]!.ejected = true;
    const k = keys.find((key) => lb.pick(key, undefined) === eps[0])!;
    expect(lb.pick(k, undefined)).toBe(eps[0]);
    expect(lb.pick(k, eps[0])).toBe(eps[1]);
  });

  it('picks at random without a key, honouring avoid', () => {
    const eps = handles(3);
    const lb = new MaglevBalancer({ random: () => 0.99 });
    lb.update(eps);
    expect(lb.pick(undefined, undefined)).toBe(eps[2]);
    expect(lb.pick(undefined, eps[2])).toBe(eps[1]);
  });
});

describe('isPrime', () => {
  it('tells primes from composites', () => {
    expect([1, 2, 3, 4, 13, 15, 65537, 65539, 5_000_011].map(isPrime)).toEqual([
      false,
      true,
      true,
      false,
      true,
      false,
      true,
      true,
      true,
    ]);
  });
});
