// A request refused by maxPending (503 overloaded, nothing sent) is no outcome for the breaker: not a success that dilutes failures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { upstreamState } from '../helpers/upstream-state.ts';

describe('pending overflow and the breaker', () => {
  let failing: TestUpstream;
  let mesh: InProcessMeshlet;
  const agent = new Agent({ connections: 40 });

  beforeAll(async () => {
    // Every answer is a 500 on a connection that closes: each attempt connects afresh (a pending wait).
    failing = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(500, { connection: 'close' });
      res.end('boom');
    });
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { flaky: [failing.endpoint] } },
      upstreams: {
        flaky: {
          retries: { attempts: 1 },
          outlierDetection: { enabled: false },
          limits: { maxPending: 1 },
          circuitBreaker: { volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeout: '30s' },
        },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await agent.close();
    await failing.close();
  });

  it('every request that reached the endpoint failed: the breaker opens, however many were refused as overloaded', async () => {
    const tally: Record<string, number> = {};
    // Bursts of 30 at once on fresh connections: one connects at a time (maxPending 1), the rest are refused.
    for (
      let burst = 0;
      burst < 10 && (await upstreamState(mesh.admin, 'flaky')).circuitBreaker === 'closed';
      burst++
    ) {
      const answers = await Promise.all(
        Array.from({ length: 30 }, async () => {
          const res = await request(`${mesh.outbound}/`, { headers: { host: 'flaky' }, dispatcher: agent });
          await res.body.dump();
          return `${res.statusCode} ${String(res.headers['x-meshlet-error'] ?? 'endpoint')}`;
        }),
      );
      for (const a of answers) tally[a] = (tally[a] ?? 0) + 1;
    }
    // The limit did refuse requests (nothing sent), and at least volumeThreshold reached the endpoint.
    // Before the fix: ~276 overloaded counted as breaker successes against ~24 failures, still closed.
    expect(tally['503 overloaded']).toBeGreaterThan(0);
    expect(failing.requests.length).toBeGreaterThanOrEqual(5);
    expect((await upstreamState(mesh.admin, 'flaky')).circuitBreaker).toBe('open');
  });
});
