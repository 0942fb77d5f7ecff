import { describe, expect, it } from 'vitest';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { effectiveWeight } from './weight.ts';

const withWeight = (weight: number) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000, { weight }));

describe('effectiveWeight', () => {
  it('uses positive finite weights as given', () => {
    expect(effectiveWeight(withWeight(5))).toBe(5);
    expect(effectiveWeight(withWeight(0.5))).toBe(0.5);
  });

  it('counts zero, negative and non-finite weights as 1', () => {
    for (const w of [0, -3, Number.NaN, Number.POSITIVE_INFINITY])
      expect(effectiveWeight(withWeight(w))).toBe(1);
  });
});
