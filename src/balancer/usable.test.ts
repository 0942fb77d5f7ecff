import { describe, expect, it } from 'vitest';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { hasOther, hasUsable } from './usable.ts';

const handles = (n: number) =>
  Array.from({ length: n }, (_, i) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000 + i)));

describe('hasUsable', () => {
  it('is true only when an endpoint is neither avoided nor ejected', () => {
    const [a, b] = handles(2);
    expect(hasUsable([], undefined)).toBe(false);
    expect(hasUsable([a!, b!], a)).toBe(true);
    b!.ejected = true;
    expect(hasUsable([a!, b!], a)).toBe(false);
    expect(hasUsable([a!, b!], undefined)).toBe(true);
  });
});

describe('hasOther', () => {
  it('is true when an endpoint other than the avoided one exists', () => {
    const [a, b] = handles(2);
    expect(hasOther([], undefined)).toBe(false);
    expect(hasOther([a!], a)).toBe(false);
    expect(hasOther([a!], b)).toBe(true);
    expect(hasOther([a!, b!], a)).toBe(true);
  });
});
