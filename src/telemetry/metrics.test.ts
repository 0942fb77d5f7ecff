import { describe, expect, it } from 'vitest';
import { Metrics } from './metrics.ts';

describe('Metrics: request-path counters read at scrape', () => {
  it('shows requests, durations, requests in flight and answered attempts, without counting twice', async () => {
    const m = new Metrics({ processMetrics: false });
    const users = m.forUpstream('outbound', 'users');
    expect(m.forUpstream('outbound', 'users')).toBe(users);
    expect(await m.registry.metrics()).not.toMatch(/meshlet_requests_total\{/);

    users.active++;
    users.attemptResponses++;
    users.finished(200, 0.004);
    users.active--;
    users.active++; // one still in flight
    users.attemptResponses++;
    users.finished(503, 0.02);
    const first = await m.registry.metrics();
    const second = await m.registry.metrics();
    for (const text of [first, second]) {
      expect(text).toMatch(
        /^meshlet_requests_total\{direction="outbound",upstream="users",status_class="2xx"\} 1$/m,
      );
      expect(text).toMatch(
        /^meshlet_requests_total\{direction="outbound",upstream="users",status_class="5xx"\} 1$/m,
      );
      expect(text).toMatch(
        /^meshlet_request_duration_seconds_bucket\{le="0.005",direction="outbound",upstream="users",status_class="2xx"\} 1$/m,
      );
      expect(text).toMatch(/^meshlet_requests_active\{direction="outbound",upstream="users"\} 1$/m);
      expect(text).toMatch(/^meshlet_upstream_attempts_total\{upstream="users",result="response"\} 2$/m);
    }
    // Attempts counted elsewhere on the same family add up with the request path's.
    m.resilience.attempts.labels('users', 'reset').inc();
    users.attemptResponses++;
    const third = await m.registry.metrics();
    expect(third).toMatch(/^meshlet_upstream_attempts_total\{upstream="users",result="response"\} 3$/m);
    expect(third).toMatch(/^meshlet_upstream_attempts_total\{upstream="users",result="reset"\} 1$/m);
  });

  it('leaves out upstreams that never had a request', async () => {
    const m = new Metrics({ processMetrics: false });
    m.forUpstream('inbound', 'quiet');
    const text = await m.registry.metrics();
    expect(text).not.toMatch(/upstream="quiet"/);
  });
});

describe('Metrics: Node process series', () => {
  it('has the process and heap series, and the GC histogram only with gcDurations', async () => {
    const plain = await new Metrics().registry.metrics();
    expect(plain).toMatch(/^meshlet_process_resident_memory_bytes \d/m);
    expect(plain).toMatch(/^# TYPE meshlet_nodejs_active_handles gauge$/m);
    // prom-client's gauges named _total (a counter's suffix) are left out; the by-type gauges sum to them.
    expect(plain).not.toMatch(/^# TYPE \S+_total (?!counter)/m);
    expect(plain).not.toMatch(/meshlet_nodejs_gc_duration_seconds/);
    const withGc = new Metrics({ gcDurations: true });
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 50));
    expect(await withGc.registry.metrics()).toMatch(/^# TYPE meshlet_nodejs_gc_duration_seconds histogram$/m);
  });
});
