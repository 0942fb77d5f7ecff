import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { createBalancer } from './create-balancer.ts';
import type { LoadBalancerKind } from './load-balancer.ts';
import type { MaglevBalancer } from './maglev.ts';
import type { RingHashBalancer } from './ring-hash.ts';

const kinds: LoadBalancerKind[] = [
  'round_robin',
  'random',
  'least_request',
  'weighted',
  'ring_hash',
  'maglev',
  'peak_ewma',
];

const handles = (n: number) =>
  Array.from({ length: n }, (_, i) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000 + i)));

describe('createBalancer', () => {
  it.each(kinds)('builds a working %s balancer', (kind) => {
    const lb = createBalancer(kind, { clock: new ManualClock(), random: () => 0.5 });
    expect(lb.kind).toBe(kind);
    expect(lb.pick('key', undefined)).toBeUndefined();
    const eps = handles(3);
    lb.update(eps);
    for (let i = 0; i < 10; i++) {
      const h = lb.pick(`key-${i}`, eps[0]);
      expect(h).toBeDefined();
      expect(h).not.toBe(eps[0]);
    }
  });

  it('passes each kind its own options', () => {
    const ring = createBalancer('ring_hash', { ringHash: { minimumRingSize: 16 } }) as RingHashBalancer;
    ring.update(handles(2));
    expect(ring.ringSize).toBe(32);
    const maglev = createBalancer('maglev', { maglev: { tableSize: 251 } }) as MaglevBalancer;
    expect(maglev.tableSize).toBe(251);
    expect(() => createBalancer('maglev', { maglev: { tableSize: 100 } })).toThrow(RangeError);
    expect(() => createBalancer('peak_ewma', { peakEwma: { decayMs: -1 } })).toThrow(RangeError);
  });

  it('only peak_ewma observes latency', () => {
    for (const kind of kinds)
      expect(typeof createBalancer(kind).observe === 'function').toBe(kind === 'peak_ewma');
  });

  it('rejects an unknown kind', () => {
    expect(() => createBalancer('fastest' as LoadBalancerKind)).toThrow(
      /unknown load balancer kind: fastest/,
    );
  });
});
