import { describe, expect, it } from 'vitest';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { hashString } from './hash.ts';
import { RingHashBalancer } from './ring-hash.ts';

const handles = (n: number, weights: number[] = []) =>
  Array.from(
    { length: n },
    (_, i) => new EndpointHandle(makeEndpoint(`10.0.0.${i + 1}`, 8080, { weight: weights[i] ?? 1 })),
  );

const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

const assign = (lb: RingHashBalancer) => keys.map((k) => lb.pick(k, undefined));

describe('RingHashBalancer', () => {
  it('returns undefined with no endpoints', () => {
    expect(new RingHashBalancer().pick('k', undefined)).toBeUndefined();
  });

  it('gives the lightest endpoints minimumRingSize nodes each and the others proportionally more', () => {
    const lb = new RingHashBalancer();
    lb.update(handles(1));
    expect(lb.ringSize).toBe(1024);
    lb.update(handles(3));
    expect(lb.ringSize).toBe(3 * 1024);
    const small = new RingHashBalancer({ minimumRingSize: 64 });
    small.update(handles(4, [2, 2, 2, 3]));
    expect(small.ringSize).toBe(64 * 3 + 96);
  });

  it('caps the ring at the maximum size', () => {
    const lb = new RingHashBalancer({ minimumRingSize: 100, maximumRingSize: 100 });
    lb.update(handles(2, [1, 1000]));
    expect(lb.ringSize).toBeLessThanOrEqual(100);
    expect(lb.ringSize).toBeGreaterThanOrEqual(98);
  });

  it('rejects bad sizes', () => {
    expect(() => new RingHashBalancer({ minimumRingSize: 0 })).toThrow(/minimumRingSize/);
    expect(() => new RingHashBalancer({ minimumRingSize: 2048, maximumRingSize: 1024 })).toThrow(
      /maximumRingSize/,
    );
  });

  it('sends the same key to the same endpoint, across instances too', () => {
    const eps = handles(5);
    const a = new RingHashBalancer();
    const b = new RingHashBalancer();
    a.update(eps);
    b.update([...eps]);
    for (const k of keys.slice(0, 500)) {
      const first = a.pick(k, undefined);
      expect(a.pick(k, undefined)).toBe(first);
      expect(b.pick(k, undefined)).toBe(first);
    }
  });

  it('sends each key to the first node at or after its hash, on sparse and dense rings alike', () => {
    // Brute force over the ring's definition, against the bucket-indexed search of pick().
    for (const [n, size] of [
      [2, 3],
      [3, 64],
      [5, 1024],
    ] as const) {
      const list = handles(n);
      const lb = new RingHashBalancer({ minimumRingSize: size });
      lb.update(list);
      const nodes = list
        .flatMap((h) =>
          Array.from({ length: size }, (_, i) => ({ hash: hashString(`${h.endpoint.id}_${i}`), h })),
        )
        .sort((a, b) => a.hash - b.hash);
      for (const key of keys.slice(0, 2000)) {
        const k = hashString(key);
        const want = (nodes.find((node) => node.hash >= k) ?? nodes[0]!).h;
        expect(lb.pick(key, undefined)).toBe(want);
      }
    }
  });

  it('spreads keys in proportion to weight', () => {
    const eps = handles(3, [1, 1, 2]);
    const lb = new RingHashBalancer();
    lb.update(eps);
    const picks = assign(lb);
    const share = (h: EndpointHandle) => picks.filter((p) => p === h).length / keys.length;
    expect(share(eps[0]!)).toBeCloseTo(0.25, 1);
    expect(share(eps[1]!)).toBeCloseTo(0.25, 1);
    expect(share(eps[2]!)).toBeCloseTo(0.5, 1);
  });

  it('keeps at least 65% of keys on their endpoint when a fourth joins three', () => {
    const eps = handles(4);
    const lb = new RingHashBalancer();
    lb.update(eps.slice(0, 3));
    const before = assign(lb);
    lb.update(eps);
    const after = assign(lb);
    const kept = before.filter((h, i) => after[i] === h).length / keys.length;
    expect(kept).toBeGreaterThanOrEqual(0.65);
    // Every key that moved, moved to the newcomer.
    for (let i = 0; i < keys.length; i++) if (after[i] !== before[i]) expect(after[i]).toBe(eps[3]);
  });

  it('walks to the next distinct endpoint when the key’s own is avoided or ejected', () => {
    const eps = handles(4);
    const lb = new RingHashBalancer();
    lb.update(eps);
    const before = assign(lb);
    const target = eps[1]!;
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
      expect(lb.pick(keys[i], undefined)).toBe(moved[i]);
    }
    // The lost endpoint's keys spread over the others rather than landing on one.
    const heirs = new Set(moved.filter((_, i) => before[i] === target));
    expect(heirs.size).toBe(3);
  });

  it('falls back to an ejected endpoint only when nothing else remains', () => {
    const eps = handles(2);
    const lb = new RingHashBalancer();
    lb.update(eps);
    eps[0]!.ejected = true;
    eps[1]!.ejected = true;
    const k = keys.find((key) => lb.pick(key, undefined) === eps[0])!;
    expect(lb.pick(k, eps[0])).toBe(eps[1]);
    lb.update([eps[0]!]);
    expect(lb.pick(k, eps[0])).toBe(eps[0]);
  });

  it('picks at random without a key, honouring avoid', () => {
    const eps = handles(3);
    const lb = new RingHashBalancer({ random: () => 0 });
    lb.update(eps);
    expect(lb.pick(undefined, undefined)).toBe(eps[0]);
    expect(lb.pick(undefined, eps[0])).toBe(eps[1]);
  });
});
