import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { ErrorWindow } from './error-window.ts';

describe('ErrorWindow', () => {
  it('trips only past the volume threshold and above the error percentage', () => {
    const w = new ErrorWindow(10_000, 10, new ManualClock());
    for (let i = 0; i < 9; i++) w.record(false);
    expect(w.trips(10, 50)).toBe(false); // volume not reached
    w.record(true);
    expect(w.trips(10, 50)).toBe(true); // 9 of 10 failed
    expect(w.trips(10, 90)).toBe(false); // 90% is not above 90%
  });

  it('forgets outcomes older than the window, bucket by bucket', () => {
    const clock = new ManualClock();
    const w = new ErrorWindow(1000, 10, clock);
    for (let i = 0; i < 20; i++) w.record(false);
    clock.advance(500);
    for (let i = 0; i < 5; i++) w.record(true);
    expect(w.total).toBe(25);
    clock.advance(600); // the failures' bucket left the window
    expect(w.total).toBe(5);
    expect(w.trips(1, 50)).toBe(false);
    clock.advance(10_000);
    expect(w.total).toBe(0);
  });

  it('clear() forgets everything; bad options are refused', () => {
    const w = new ErrorWindow(1000, 10, new ManualClock());
    w.record(false);
    w.clear();
    expect(w.total).toBe(0);
    expect(() => new ErrorWindow(0)).toThrow(RangeError);
    expect(() => new ErrorWindow(1000, 0)).toThrow(RangeError);
  });
});
