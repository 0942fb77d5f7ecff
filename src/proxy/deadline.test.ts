import { describe, expect, it } from 'vitest';
import { incomingDeadlineMs } from './deadline.ts';

describe('incomingDeadlineMs', () => {
  it('reads x-meshlet-timeout-ms', () => {
    expect(incomingDeadlineMs('200', undefined)).toBe(200);
  });
  it.each([
    ['100m', 100],
    ['2S', 2000],
    ['1M', 60_000],
    ['1H', 3_600_000],
    ['5000u', 5],
    ['5000000n', 5],
  ])('reads grpc-timeout %s', (value, ms) => {
    expect(incomingDeadlineMs(undefined, value)).toBe(ms);
  });
  it('takes the smaller of both', () => {
    expect(incomingDeadlineMs('500', '100m')).toBe(100);
  });
  it.each([['abc'], ['-5'], ['1.5'], ['']])('ignores malformed %j', (value) => {
    expect(incomingDeadlineMs(value, value)).toBeUndefined();
  });
});
