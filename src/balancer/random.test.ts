import { describe, expect, it } from 'vitest';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { RandomBalancer } from './random.ts';

const handles = (n: number) =>
  Array.from({ length: n }, (_, i) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000 + i)));

describe('RandomBalancer', () => {
  it('returns undefined with no endpoints', () => {
    expect(new RandomBalancer().pick(undefined, undefined)).toBeUndefined();
  });

  it('maps the injected random value onto the endpoint list', () => {
    let r = 0;
    const lb = new RandomBalancer({ random: () => r });
    const eps = handles(4);
    lb.update(eps);
    expect(lb.pick(undefined, undefined)).toBe(eps[0]);
    r = 0.6;
    expect(lb.pick(undefined, undefined)).toBe(eps[2]);
    r = 0.999;
    expect(lb.pick('ignored', undefined)).toBe(eps[3]);
  });

  it('spreads picks evenly', () => {
    const lb = new RandomBalancer();
    const eps = handles(4);
    lb.update(eps);
    const counts = new Map<EndpointHandle, number>();
    for (let i = 0; i < 40_000; i++) {
      const h = lb.pick(undefined, undefined)!;
      counts.set(h, (counts.get(h) ?? 0) + 1);
    }
    for (const h of eps) expect(Math.abs((counts.get(h) ?? 0) - 10_000)).toBeLessThan(600);
  });

  it('skips the endpoint to avoid when there is another', () => {
    const lb = new RandomBalancer({ random: () => 0 });
    const eps = handles(3);
    lb.update(eps);
    expect(lb.pick(undefined, eps[0])).toBe(eps[1]);
    lb.update([eps[0]!]);
    expect(lb.pick(undefined, eps[0])).toBe(eps[0]);
    expect(lb.pick(undefined, eps[2])).toBe(eps[0]);
  });
});
