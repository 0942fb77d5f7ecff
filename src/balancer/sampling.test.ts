import { describe, expect, it } from 'vitest';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { pickTwoChoices, pickUniform } from './sampling.ts';

const handles = (n: number) =>
  Array.from({ length: n }, (_, i) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000 + i)));

/** A random source that returns the given values in turn. */
const sequence = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length]!;
};

describe('pickUniform', () => {
  it('returns undefined for none and the only endpoint for one, even when avoided', () => {
    expect(pickUniform([], -1, Math.random)).toBeUndefined();
    const [a] = handles(1);
    expect(pickUniform([a!], 0, Math.random)).toBe(a);
  });

  it('maps random values onto indices, skipping the avoided index', () => {
    const eps = handles(4);
    expect(pickUniform(eps, -1, () => 0)).toBe(eps[0]);
    expect(pickUniform(eps, -1, () => 0.99)).toBe(eps[3]);
    expect(pickUniform(eps, -1, () => 1)).toBe(eps[3]);
    expect(pickUniform(eps, 0, () => 0)).toBe(eps[1]);
    expect(pickUniform(eps, 2, () => 0.5)).toBe(eps[1]);
    expect(pickUniform(eps, 2, () => 0.7)).toBe(eps[3]);
    expect(pickUniform(eps, 3, () => 0.99)).toBe(eps[2]);
  });
});

describe('pickTwoChoices', () => {
  const eps = handles(4);
  const byPort = (b: EndpointHandle, a: EndpointHandle) => b.endpoint.port < a.endpoint.port;

  it('draws two distinct endpoints and keeps the cheaper', () => {
    // x = 0, y = floor(0 * 3) = 0 → bumped to 1: compares eps[0] and eps[1].
    expect(pickTwoChoices(eps, -1, sequence(0, 0), (b, a) => byPort(a, b))).toBe(eps[1]);
    expect(pickTwoChoices(eps, -1, sequence(0, 0), byPort)).toBe(eps[0]);
  });

  it('keeps the first drawn on a tie', () => {
    expect(pickTwoChoices(eps, -1, sequence(0.9, 0), () => false)).toBe(eps[3]);
  });

  it('never draws the avoided endpoint when another exists', () => {
    const seen = new Set<EndpointHandle>();
    for (let i = 0; i < 200; i++) seen.add(pickTwoChoices(eps, 1, Math.random, () => Math.random() < 0.5)!);
    expect(seen.has(eps[1]!)).toBe(false);
    expect(seen.size).toBe(3);
    expect(pickTwoChoices(eps.slice(0, 2), 0, Math.random, byPort)).toBe(eps[1]);
    expect(pickTwoChoices(eps.slice(0, 2), 1, Math.random, byPort)).toBe(eps[0]);
    expect(pickTwoChoices(eps.slice(0, 1), 0, Math.random, byPort)).toBe(eps[0]);
    expect(pickTwoChoices([], -1, Math.random, byPort)).toBeUndefined();
  });
});
