import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BucketHistogram } from './bucket-histogram.ts';

const BUCKETS = [0.001, 0.01, 0.1, 1];
const VALUES = [0, 0.0005, 0.001, 0.002, 0.05, 0.1, 0.5, 1, 7, 30];

describe('BucketHistogram', () => {
  it('exports exactly what prom-client’s Histogram exports for the same observations', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const labelNames = ['upstream', 'status_class'] as const;
    const a = new BucketHistogram({ name: 'h', help: 'x', labelNames, buckets: BUCKETS, registers: [ours] });
    const b = new Histogram({ name: 'h', help: 'x', labelNames, buckets: BUCKETS, registers: [theirs] });
    const a2 = a.child({ upstream: 'users', status_class: '2xx' });
    const a5 = a.child({ upstream: 'users', status_class: '5xx' });
    a.child({ upstream: 'idle', status_class: '2xx' }); // never observed: not exported, as prom-client
    for (const v of VALUES) {
      a2.observe(v);
      b.labels('users', '2xx').observe(v);
    }
    a5.observe(0.003);
    b.labels('users', '5xx').observe(0.003);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    // The JSON form too, but for prom-client's empty `exemplar` slots.
    const plain = (x: unknown) =>
      JSON.parse(JSON.stringify(x, (k, v: unknown) => (k === 'exemplar' ? undefined : v)));
    expect(plain(await ours.getMetricsAsJSON())).toEqual(plain(await theirs.getMetricsAsJSON()));
  });

  it('hands out one child per label set and zeroes on reset', async () => {
    const reg = new Registry();
    const h = new BucketHistogram({
      name: 'h',
      help: 'x',
      labelNames: ['u'],
      buckets: BUCKETS,
      registers: [reg],
    });
    const c = h.child({ u: 'a' });
    expect(h.child({ u: 'a' })).toBe(c);
    c.observe(0.05);
    expect(await reg.metrics()).toMatch(/^h_bucket\{le="0.1",u="a"\} 1$/m);
    reg.resetMetrics();
    expect(c.count).toBe(0);
    expect(await reg.metrics()).not.toMatch(/h_bucket/);
  });
});
