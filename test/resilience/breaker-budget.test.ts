// A failing upstream: the retry budget bounds the extra load, then the breaker opens, then recovers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('retry budget and circuit breaker against an upstream answering 503', () => {
  let healthy = false;
  let app: TestUpstream;
  let mesh: InProcessMeshlet;
  const floorPerSecond = 1;
  const windowSeconds = 10;

  beforeAll(async () => {
    app = await startUpstream((req, res) => {
      req.resume();
      res.statusCode = healthy ? 200 : 503;
      res.end(healthy ? 'ok' : 'down');
    });
    const retries = {
      attempts: 3,
      retryOn: ['gateway-error'],
      backoff: { base: '1ms', max: '2ms' },
      budget: { ratio: 0.2, minRetriesPerSecond: floorPerSecond, window: `${windowSeconds}s` },
    };
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { nobreaker: [app.endpoint], guarded: [app.endpoint] } },
      upstreams: {
        nobreaker: { retries, circuitBreaker: { enabled: false } },
        guarded: {
          retries,
          circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 10, resetTimeout: '400ms' },
        },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await app.close();
  });

  async function metrics(): Promise<string> {
    return (await request(`${mesh.admin}/metrics`)).body.text();
  }

  it('the upstream sees at most 1.2× the client requests plus the budget floor', async () => {
    const before = app.requests.length;
    const clientRequests = 200;
    for (let i = 0; i < clientRequests; i += 10) {
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          const res = await request(`${mesh.outbound}/`, { headers: { host: 'nobreaker' } });
          expect(res.statusCode).toBe(503);
          await res.body.dump();
        }),
      );
    }
    const seen = app.requests.length - before;
    // Without a budget, 3 attempts each would be 600.
    expect(seen).toBeLessThanOrEqual(1.2 * clientRequests + floorPerSecond * windowSeconds);
    expect(seen).toBeGreaterThan(clientRequests);
    expect(await metrics()).toMatch(
      /^meshlet_retries_skipped_total\{upstream="nobreaker",why="budget-exhausted"\} [1-9]/m,
    );
  });

  it('then the breaker opens: requests fail in under 5 ms without reaching it; a half-open trial closes it', async () => {
    let opened = false;
    for (let i = 0; i < 40 && !opened; i++) {
      const res = await request(`${mesh.outbound}/`, { headers: { host: 'guarded' } });
      await res.body.dump();
      opened = res.headers['x-meshlet-error'] === 'circuit_open';
    }
    expect(opened).toBe(true);
    const before = app.requests.length;
    const timings: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const res = await request(`${mesh.outbound}/`, { headers: { host: 'guarded' } });
      await res.body.dump();
      timings.push(performance.now() - t0);
      expect(res.statusCode).toBe(503);
      expect(res.headers['x-meshlet-error']).toBe('circuit_open');
    }
    expect(app.requests.length).toBe(before);
    timings.sort((a, b) => a - b);
    expect(timings[Math.floor(timings.length / 2)]!).toBeLessThan(5);
    const view = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
      upstreams: { guarded: { circuitBreaker: string } };
    };
    expect(view.upstreams.guarded.circuitBreaker).toBe('open');
    expect(await metrics()).toMatch(/^meshlet_circuit_breaker_state\{upstream="guarded",state="open"\} 1$/m);

    healthy = true;
    await new Promise((r) => setTimeout(r, 500));
    const trial = await request(`${mesh.outbound}/`, { headers: { host: 'guarded' } });
    expect(trial.statusCode).toBe(200);
    await trial.body.dump();
    const after = await request(`${mesh.outbound}/`, { headers: { host: 'guarded' } });
    expect(after.statusCode).toBe(200);
    await after.body.dump();
    expect(await metrics()).toMatch(
      /^meshlet_circuit_breaker_state\{upstream="guarded",state="closed"\} 1$/m,
    );
    expect(await metrics()).toMatch(
      /^meshlet_circuit_breaker_transitions_total\{upstream="guarded",to="half_open"\} 1$/m,
    );
  });

  it('POST /upstreams/NAME/breaker/reset closes an open breaker', async () => {
    healthy = false;
    let opened = false;
    for (let i = 0; i < 60 && !opened; i++) {
      const res = await request(`${mesh.outbound}/`, { headers: { host: 'guarded' } });
      await res.body.dump();
      opened = res.headers['x-meshlet-error'] === 'circuit_open';
    }
    expect(opened).toBe(true);
    const reset = await request(`${mesh.admin}/upstreams/guarded/breaker/reset`, { method: 'POST' });
    expect(reset.statusCode).toBe(200);
    expect(await reset.body.json()).toEqual({ upstream: 'guarded', circuitBreaker: 'closed' });
    const missing = await request(`${mesh.admin}/upstreams/nope/breaker/reset`, { method: 'POST' });
    expect(missing.statusCode).toBe(404);
    await missing.body.dump();
  });
});
