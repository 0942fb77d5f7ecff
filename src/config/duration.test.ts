import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from './duration.ts';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['1s', 1000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    [' 2s ', 2000],
    ['100', 100],
    [100, 100],
    [0, 0],
  ])('%j → %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([['1x'], ['s'], ['-1s'], [''], [-5], [Number.NaN], [null], [{}], ['1s junk']])(
    'rejects %j',
    (input) => {
      expect(parseDuration(input)).toBeUndefined();
    },
  );

  it('formats back', () => {
    expect(formatDuration(1500)).toBe('1.5s');
    expect(formatDuration(300_000)).toBe('5m');
    expect(formatDuration(25)).toBe('25ms');
  });
});
