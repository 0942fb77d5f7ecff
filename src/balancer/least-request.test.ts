import { describe, expect, it } from 'vitest';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { LeastRequestBalancer } from './least-request.ts';

const handles = (n: number) =>
  Array.from({ length: n }, (_, i) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000 + i)));

describe('LeastRequestBalancer', () => {
  it('returns undefined with no endpoints and the only one with one', () => {
    const lb = new LeastRequestBalancer();
    expect(lb.pick(undefined, undefined)).toBeUndefined();
    const eps = handles(1);
    lb.update(eps);
    expect(lb.pick(undefined, eps[0])).toBe(eps[0]);
  });

  it('of two endpoints always picks the one with fewer requests in flight', () => {
    const lb = new LeastRequestBalancer();
    const eps = handles(2);
    lb.update(eps);
    eps[0]!.active = 5;
    eps[1]!.active = 2;
    for (let i = 0; i < 50; i++) expect(lb.pick(undefined, undefined)).toBe(eps[1]);
  });

  it('prefers less loaded endpoints and never picks the most loaded', () => {
    let seed = 42;
    const random = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const lb = new LeastRequestBalancer({ random });
    const eps = handles(4);
    eps.forEach((h, i) => {
      h.active = i * 10;
    });
    lb.update(eps);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 12_000; i++) counts[lb.pick(undefined, undefined)!.endpoint.port - 9000]! += 1;
    // P2C over distinct pairs: the i-th least loaded wins (n - 1 - i) of the n(n-1)/2 pairs.
    expect(counts[3]).toBe(0);
    expect(counts[0]!).toBeGreaterThan(counts[1]!);
    expect(counts[1]!).toBeGreaterThan(counts[2]!);
    expect(counts[0]! / 12_000).toBeCloseTo(0.5, 1);
  });

  it('balances in-flight load when requests stay open', () => {
    let seed = 7;
    const random = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const lb = new LeastRequestBalancer({ random });
    const eps = handles(5);
    lb.update(eps);
    for (let i = 0; i < 1000; i++) lb.pick(undefined, undefined)!.active += 1;
    const loads = eps.map((h) => h.active);
    expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(4);
  });

  it('skips the endpoint to avoid even when it is the least loaded', () => {
    const lb = new LeastRequestBalancer();
    const eps = handles(3);
    eps[1]!.active = 3;
    eps[2]!.active = 7;
    lb.update(eps);
    for (let i = 0; i < 50; i++) expect(lb.pick(undefined, eps[0])).toBe(eps[1]);
  });
});
