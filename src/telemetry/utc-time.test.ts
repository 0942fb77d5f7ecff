import { describe, expect, it } from 'vitest';
import { httpDate, isoTime, pinoIsoTime } from './utc-time.ts';

/** Instants that exercise padding, leap days, second and year edges, and the cache's second switch. */
const EDGES = [
  0, 1, 999, 1000, 59_999, 60_000, 951_782_400_000 /* 2000-02-29 */, 1_733_350_205_123, 1_733_350_205_999,
  1_733_350_206_000, 4_102_444_800_000 /* 2100-01-01 */, 253_402_300_799_999 /* 9999-12-31T23:59:59.999 */,
  -62_135_596_800_000 /* 0001-01-01 */, -1 /* 1969-12-31T23:59:59.999 */, -1000, -1001,
];

/** A deterministic spread over years 1–9999 (a linear congruential walk), checked in order and shuffled. */
function spread(n: number): number[] {
  const lo = -62_135_596_800_000;
  const span = 253_402_300_799_999 - lo;
  const out: number[] = [];
  let x = 12_345;
  for (let i = 0; i < n; i++) {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31;
    out.push(lo + Math.floor((x / 2 ** 31) * span));
  }
  return out;
}

describe('utc-time', () => {
  it('isoTime writes what Date.prototype.toISOString writes', () => {
    for (const ms of [...EDGES, ...spread(20_000)])
      expect(isoTime(ms), String(ms)).toBe(new Date(ms).toISOString());
  });

  it('httpDate writes what Date.prototype.toUTCString (node:http Date) writes', () => {
    for (const ms of [...EDGES, ...spread(20_000)])
      expect(httpDate(ms), String(ms)).toBe(new Date(ms).toUTCString());
  });

  it('keeps each millisecond distinct within one cached second, and moves on with the second', () => {
    const base = 1_733_350_205_000;
    expect(isoTime(base + 7)).toBe('2024-12-04T22:10:05.007Z');
    expect(isoTime(base + 70)).toBe('2024-12-04T22:10:05.070Z');
    expect(isoTime(base + 700)).toBe('2024-12-04T22:10:05.700Z');
    expect(isoTime(base + 1_000)).toBe('2024-12-04T22:10:06.000Z');
    expect(isoTime(base - 1)).toBe('2024-12-04T22:10:04.999Z');
    expect(httpDate(base + 999)).toBe('Wed, 04 Dec 2024 22:10:05 GMT');
    expect(httpDate(base + 1_000)).toBe('Wed, 04 Dec 2024 22:10:06 GMT');
  });

  it('pinoIsoTime is the `,"time":"…"` fragment pino splices into a line, for now', () => {
    const before = Date.now();
    const fragment = pinoIsoTime();
    const after = Date.now();
    const { time } = JSON.parse(`{${fragment.slice(1)}}`) as { time: string };
    const ms = Date.parse(time);
    expect(isoTime(ms)).toBe(time);
    expect(ms).toBeGreaterThanOrEqual(before);
    expect(ms).toBeLessThanOrEqual(after);
  });
});
