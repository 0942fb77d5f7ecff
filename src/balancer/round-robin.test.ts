import { describe, expect, it } from 'vitest';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { RoundRobinBalancer } from './round-robin.ts';

const handles = (n: number) =>
  Array.from({ length: n }, (_, i) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000 + i)));

describe('RoundRobinBalancer', () => {
  it('cycles through endpoints in order', () => {
    const lb = new RoundRobinBalancer();
    const eps = handles(3);
    lb.update(eps);
    const picks = Array.from({ length: 6 }, () => lb.pick(undefined, undefined)?.endpoint.port);
    expect(picks).toEqual([9000, 9001, 9002, 9000, 9001, 9002]);
  });

  it('returns undefined with no endpoints', () => {
    const lb = new RoundRobinBalancer();
    expect(lb.pick(undefined, undefined)).toBeUndefined();
  });

  it('skips the endpoint to avoid when there is another', () => {
    const lb = new RoundRobinBalancer();
    const eps = handles(2);
    lb.update(eps);
    expect(lb.pick(undefined, eps[0])).toBe(eps[1]);
    lb.update([eps[0]!]);
    expect(lb.pick(undefined, eps[0])).toBe(eps[0]);
  });
});
