// While a half-open breaker's one trial is in flight, the other requests go to the fallback, not 503 circuit_open.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { upstreamState } from '../helpers/upstream-state.ts';

describe('half-open breaker with a fallback', () => {
  /** How the primary answers: 500 at once, or 500 after a hold (the trial in flight). */
  let mode: 'fail' | 'hold' = 'fail';
  let primary: TestUpstream;
  let backup: TestUpstream;
  let mesh: InProcessMeshlet;
  const agent = new Agent({ connections: 20 });

  beforeAll(async () => {
    primary = await startUpstream((req, res) => {
      req.resume();
      res.statusCode = 500;
      if (mode === 'fail') res.end('boom');
      else setTimeout(() => res.end('late boom'), 600).unref();
    });
    backup = await startUpstream();
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { flaky: [primary.endpoint], backup: [backup.endpoint] } },
      upstreams: {
        flaky: {
          fallback: 'backup',
          retries: { attempts: 1 },
          outlierDetection: { enabled: false },
          circuitBreaker: { volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeout: '300ms' },
        },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await agent.close();
    await Promise.all([primary, backup].map((u) => u.close()));
  });

  it('requests beside the trial are served by the fallback (DESIGN: circuit_open only with no failover target)', async () => {
    for (let i = 0; i < 6; i++) {
      const res = await request(`${mesh.outbound}/`, { headers: { host: 'flaky' }, dispatcher: agent });
      await res.body.dump();
    }
    expect((await upstreamState(mesh.admin, 'flaky')).circuitBreaker).toBe('open');
    const t0 = performance.now();
    while ((await upstreamState(mesh.admin, 'flaky')).circuitBreaker !== 'half_open') {
      expect(performance.now() - t0).toBeLessThan(3000);
      await new Promise((r) => setTimeout(r, 25));
    }
    // The trial: the primary holds it for 600 ms, then fails it.
    mode = 'hold';
    const seen = primary.requests.length;
    const trial = request(`${mesh.outbound}/trial`, { headers: { host: 'flaky' }, dispatcher: agent });
    while (primary.requests.length === seen) {
      expect(performance.now() - t0).toBeLessThan(5000);
      await new Promise((r) => setTimeout(r, 5));
    }
    const beside = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        request(`${mesh.outbound}/beside/${i}`, { headers: { host: 'flaky' }, dispatcher: agent }),
      ),
    );
    const answers = await Promise.all(
      beside.map(async (res) => {
        await res.body.dump();
        return `${res.statusCode} ${String(res.headers['x-meshlet-error'] ?? res.headers['x-upstream-port'])}`;
      }),
    );
    expect(answers).toEqual(Array(4).fill(`200 ${backup.port}`));
    // Only the trial reached the primary.
    expect(primary.requests.length).toBe(seen + 1);
    const t = await trial;
    expect(t.statusCode).toBe(500);
    await t.body.dump();
    expect((await upstreamState(mesh.admin, 'flaky')).circuitBreaker).toBe('open');
  });
});
