// HolderWait's clock: a holder is a live instance only once seen unexpired for the whole watch of a store that kept answering; an outage starts the watch over, longer by the store's renewal.
import { describe, expect, it } from 'vitest';
import { HolderWait } from '../../src/registry/holder-wait.ts';

const held = { passed: [{ id: 'web-a', holder: { address: '10.0.0.3', port: 8080 } }] };
const free = { passed: [] };

describe('HolderWait', () => {
  it('without an outage: first, waiting until graceMs passed since the first answer, then decided', () => {
    const w = new HolderWait(1000, 500);
    expect(w.see(held, 0, 10)).toBe('first');
    expect(w.see(held, 900, 910)).toBe('waiting');
    expect(w.see(held, 1010, 1020)).toBe('decided');
  });

  it('a look the store did not answer starts the watch over at the next answer, for graceMs plus renewalMs, without a second first', () => {
    const w = new HolderWait(1000, 500);
    expect(w.see(held, 0, 10)).toBe('first');
    w.interrupted();
    // Past the original watch: the first answer after the outage starts it over.
    expect(w.see(held, 2000, 2010)).toBe('waiting');
    expect(w.see(held, 3000, 3010)).toBe('waiting');
    expect(w.see(held, 3500, 3510)).toBe('waiting');
    expect(w.see(held, 3510, 3520)).toBe('decided');
  });

  it('an outage changes nothing when no holder is watched, nor after the watch ended', () => {
    const w = new HolderWait(1000, 500);
    w.interrupted();
    expect(w.see(held, 0, 10)).toBe('first');
    expect(w.see(held, 1010, 1020)).toBe('decided');
    const ended = new HolderWait(1000, 500);
    expect(ended.see(held, 0, 10)).toBe('first');
    ended.end();
    ended.interrupted();
    expect(ended.see(held, 20, 30)).toBe('decided');
    expect(ended.see(free, 40, 50)).toBe('decided');
  });

  it('a holder that changed after an outage is a new one (first), watched for graceMs', () => {
    const w = new HolderWait(1000, 500);
    expect(w.see(held, 0, 10)).toBe('first');
    w.interrupted();
    const other = { passed: [{ id: 'web-a', holder: { address: '10.0.0.4', port: 8080 } }] };
    expect(w.see(other, 2000, 2010)).toBe('first');
    expect(w.see(other, 3010, 3020)).toBe('decided');
  });
});
