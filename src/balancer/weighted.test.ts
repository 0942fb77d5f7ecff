import { describe, expect, it } from 'vitest';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { WeightedRoundRobinBalancer } from './weighted.ts';

const weighted = (...weights: number[]) =>
  weights.map((weight, i) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000 + i, { weight })));

const names = 'abcdefgh';
const pickNames = (lb: WeightedRoundRobinBalancer, count: number) =>
  Array.from({ length: count }, () => names[lb.pick(undefined, undefined)!.endpoint.port - 9000]).join('');

describe('WeightedRoundRobinBalancer', () => {
  it('returns undefined with no endpoints and the only one with one', () => {
    const lb = new WeightedRoundRobinBalancer();
    expect(lb.pick(undefined, undefined)).toBeUndefined();
    const eps = weighted(3);
    lb.update(eps);
    expect(lb.pick(undefined, eps[0])).toBe(eps[0]);
  });

  it('matches nginx smooth WRR for weights 5:1:1', () => {
    const lb = new WeightedRoundRobinBalancer();
    lb.update(weighted(5, 1, 1));
    expect(pickNames(lb, 14)).toBe('aabacaa'.repeat(2));
  });

  it('never picks an endpoint twice in a row with equal weights', () => {
    const lb = new WeightedRoundRobinBalancer();
    lb.update(weighted(1, 1, 1));
    expect(pickNames(lb, 9)).toBe('abcabcabc');
  });

  it('is exactly proportional over each cycle and never bursts', () => {
    const lb = new WeightedRoundRobinBalancer();
    const ws = [4, 3, 2, 1];
    lb.update(weighted(...ws));
    for (let cycle = 0; cycle < 3; cycle++) {
      const seq = pickNames(lb, 10);
      for (let i = 0; i < ws.length; i++) expect(seq.split(names[i]!).length - 1).toBe(ws[i]);
      // Smooth: the heaviest (40%) never runs twice in a row more than its share forces.
      expect(seq).not.toMatch(/aaa/);
      expect(seq).not.toMatch(/bb|cc|dd/);
    }
  });

  it('counts bad weights as 1', () => {
    const lb = new WeightedRoundRobinBalancer();
    lb.update(weighted(0, -1, Number.NaN));
    expect(pickNames(lb, 6)).toBe('abcabc');
  });

  it('skips the endpoint to avoid and serves it first afterwards', () => {
    const lb = new WeightedRoundRobinBalancer();
    const eps = weighted(1, 1);
    lb.update(eps);
    expect(lb.pick(undefined, eps[0])).toBe(eps[1]);
    expect(lb.pick(undefined, undefined)).toBe(eps[0]);
    const seq = pickNames(lb, 100);
    expect(seq.split('a').length - 1).toBe(50);
  });
});
