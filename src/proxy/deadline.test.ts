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
  it.each([['100000000m'], ['1s'], ['1h'], ['1x'], ['5'], ['S'], [' 1S'], ['-1S'], ['100m, 5S']])(
    'ignores a grpc-timeout gRPC does not allow (%j: 9+ digits, unknown unit, no digits, a list)',
    (value) => {
      expect(incomingDeadlineMs(undefined, value)).toBeUndefined();
    },
  );
  it.each([['1e30'], ['99999999999999999999'], ['100, 5000'], [' 5 ']])(
    'ignores an x-meshlet-timeout-ms that is not 1-10 digits (%j)',
    (value) => {
      expect(incomingDeadlineMs(value, undefined)).toBeUndefined();
    },
  );
  it('ignores repeated headers that arrive as arrays', () => {
    expect(incomingDeadlineMs(['100', '5000'], ['1S', '2S'])).toBeUndefined();
  });
  it('reads 0 as an expired deadline (as grpc-go does), and 99999999H as a finite number of ms', () => {
    expect(incomingDeadlineMs('0', undefined)).toBe(0);
    expect(incomingDeadlineMs(undefined, '0m')).toBe(0);
    expect(incomingDeadlineMs(undefined, '99999999H')).toBe(99_999_999 * 3_600_000);
  });
});
