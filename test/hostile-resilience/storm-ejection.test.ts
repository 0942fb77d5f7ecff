// Every endpoint failing at once under load: the retry budget bounds the storm, the breaker opens and probes one at a time, ejection stops at its limits.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { type UpstreamState, upstreamState } from '../helpers/upstream-state.ts';

type Mode = 'fail' | 'ok' | 'hang';

describe('all endpoints failing at once', () => {
  const ups: TestUpstream[] = [];
  let mode: Mode = 'fail';
  let lone: TestUpstream;
  let loneMode: Mode = 'fail';
  let mesh: InProcessMeshlet;
  const agent = new Agent({ connections: 256 });

  beforeAll(async () => {
    // Each fails a third of the time each way: 500, 503, or a reset before any answer.
    for (let i = 0; i < 3; i++) {
      ups.push(
        await startUpstream((req, res) => {
          req.resume();
          if (mode === 'ok') return void res.end('ok');
          const pick = Math.floor(Math.random() * 3);
          if (pick === 0) return void res.socket?.destroy();
          res.statusCode = pick === 1 ? 500 : 503;
          res.end('down');
        }),
      );
    }
    lone = await startUpstream((req, res) => {
      req.resume();
      if (loneMode === 'hang') return;
      res.statusCode = loneMode === 'ok' ? 200 : 503;
      res.end(loneMode);
    });
    const eps = ups.map((u) => u.endpoint);
    const retries = { retryOn: ['gateway-error', 'reset', '5xx'] };
    // The ejection cases are not about the wait between retries: the same attempts and conditions as the
    // default policy, a 1 ms backoff instead of 25-250 ms (60 failing requests took ~1.8 s of backoff).
    const quickRetries = { backoff: { base: '1ms', max: '2ms' } };
    const ejectAll = {
      maxEjectionPercent: 100,
      consecutive5xx: 2,
      consecutiveGatewayFailure: 2,
      baseEjectionTime: '30s',
    };
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          nobreaker: eps,
          guarded: eps,
          defaults: eps,
          panic: eps,
          nopanic: eps,
          lone: [lone.endpoint],
        },
      },
      upstreams: {
        nobreaker: { retries, circuitBreaker: { enabled: false }, outlierDetection: { enabled: false } },
        guarded: { retries, circuitBreaker: { resetTimeout: '500ms' }, outlierDetection: { enabled: false } },
        defaults: {
          retries: quickRetries,
          circuitBreaker: { enabled: false },
          outlierDetection: { consecutive5xx: 2, consecutiveGatewayFailure: 2 },
        },
        panic: { retries: quickRetries, circuitBreaker: { enabled: false }, outlierDetection: ejectAll },
        nopanic: {
          retries: quickRetries,
          circuitBreaker: { enabled: false },
          outlierDetection: { ...ejectAll, panicThreshold: 0 },
        },
        lone: { retries: { attempts: 1 }, circuitBreaker: { volumeThreshold: 5, resetTimeout: '300ms' } },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await agent.close();
    await Promise.all([...ups, lone].map((u) => u.close()));
  });

  const attempts = () => ups.reduce((n, u) => n + u.requests.length, 0);

  const state = (name: string): Promise<UpstreamState> => upstreamState(mesh.admin, name);

  /** 200 callers sending back to back for `ms`; answers counted by status and meshlet error code. */
  async function storm(
    host: string,
    ms: number,
  ): Promise<{ requests: number; answers: Record<string, number> }> {
    const answers: Record<string, number> = {};
    const end = performance.now() + ms;
    let requests = 0;
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        while (performance.now() < end) {
          requests++;
          const res = await request(`${mesh.outbound}/`, { headers: { host }, dispatcher: agent });
          await res.body.dump();
          const key = `${res.statusCode} ${res.headers['x-meshlet-error'] ?? 'endpoint'}`;
          answers[key] = (answers[key] ?? 0) + 1;
        }
      }),
    );
    return { requests, answers };
  }

  it('no breaker: 200 callers for 3 s send at most 1.2 × requests + the 100-retry floor upstream (measured ~1.22×, never 3×)', async () => {
    mode = 'fail';
    const before = attempts();
    const { requests, answers } = await storm('nobreaker', 3000);
    const sent = attempts() - before;
    expect(requests).toBeGreaterThan(500);
    // Every request failed one way or another; none hung.
    expect(Object.keys(answers).every((k) => /^50[023] /.test(k))).toBe(true);
    // Linkerd's budget: retries ≤ 20% of requests + minRetriesPerSecond (10) × window (10 s).
    expect(sent - requests).toBeLessThanOrEqual(Math.ceil(0.2 * requests) + 100);
    // Without the budget every request would make 3 attempts.
    expect(sent).toBeLessThan(2 * requests);
  }, 20_000);

  it('with the breaker: it opens within the first requests; while open, one trial per resetTimeout (500 ms) reaches the endpoints; then it recovers', async () => {
    mode = 'fail';
    const before = attempts();
    const first = await storm('guarded', 1500);
    expect((await state('guarded')).circuitBreaker).not.toBe('closed');
    expect(first.answers['503 circuit_open']! / first.requests).toBeGreaterThan(0.5);
    // Opening takes volumeThreshold (20) outcomes; the 200 callers' first wave is in flight then.
    expect(attempts() - before).toBeLessThan(1000);

    const open = attempts();
    const second = await storm('guarded', 2000);
    // 2 s / 500 ms = 4 half-open windows (5 with rounding), one trial each of up to 3 attempts: no herd.
    expect(attempts() - open).toBeLessThanOrEqual(15);
    expect(second.requests).toBeGreaterThan(1000);

    mode = 'ok';
    await new Promise((r) => setTimeout(r, 600));
    // The first request after resetTimeout is the trial: it succeeds and closes the breaker.
    const trial = await request(`${mesh.outbound}/`, { headers: { host: 'guarded' }, dispatcher: agent });
    await trial.body.dump();
    expect(trial.statusCode).toBe(200);
    expect((await state('guarded')).circuitBreaker).toBe('closed');
    const third = await storm('guarded', 500);
    expect(third.answers).toEqual({ '200 endpoint': third.requests });
  }, 20_000);

  it('a half-open trial whose caller gives up leaves the breaker half-open (the next request is the trial); it does not close it', async () => {
    loneMode = 'fail';
    for (let i = 0; i < 5; i++)
      await (await request(`${mesh.outbound}/`, { headers: { host: 'lone' } })).body.dump();
    expect((await state('lone')).circuitBreaker).toBe('open');
    await new Promise((r) => setTimeout(r, 400));
    expect((await state('lone')).circuitBreaker).toBe('half_open');
    loneMode = 'hang';
    const before = lone.requests.length;
    await expect(
      request(`${mesh.outbound}/`, { headers: { host: 'lone' }, signal: AbortSignal.timeout(150) }),
    ).rejects.toThrow();
    expect(lone.requests.length - before).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect((await state('lone')).circuitBreaker).toBe('half_open');
    // The next request is the trial; the endpoint still fails, so the breaker opens again.
    loneMode = 'fail';
    const trial = await request(`${mesh.outbound}/`, { headers: { host: 'lone' } });
    await trial.body.dump();
    expect(trial.statusCode).toBe(503);
    expect(trial.headers['x-meshlet-error']).toBeUndefined();
    expect((await state('lone')).circuitBreaker).toBe('open');
  });

  /** Sends `n` requests one by one; answers counted as in storm. */
  async function sequential(host: string, n: number): Promise<Record<string, number>> {
    const answers: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const res = await request(`${mesh.outbound}/`, { headers: { host }, dispatcher: agent });
      await res.body.dump();
      const key = `${res.statusCode} ${res.headers['x-meshlet-error'] ?? 'endpoint'}`;
      answers[key] = (answers[key] ?? 0) + 1;
    }
    return answers;
  }

  it('default maxEjectionPercent (50): with all 3 endpoints failing, exactly one is ejected; the others keep serving', async () => {
    mode = 'fail';
    await sequential('defaults', 60);
    const s = await state('defaults');
    expect(s.outlierDetection.ejectionsActive).toBe(1);
    expect(s).toMatchObject({ healthy: 2, total: 3 });
    mode = 'ok';
    expect(await sequential('defaults', 5)).toEqual({ '200 endpoint': 5 });
  });

  it('maxEjectionPercent 100: every endpoint ejected → panic (below 50% healthy): requests still go to all of them, and succeed once they recover', async () => {
    mode = 'fail';
    await sequential('panic', 60);
    const s = await state('panic');
    expect(s.outlierDetection).toEqual({ ejectionsActive: 3, panic: true });
    mode = 'ok';
    expect(await sequential('panic', 6)).toEqual({ '200 endpoint': 6 });
  });

  it('panicThreshold 0: every endpoint ejected → 503 no_healthy_endpoints without sending anything (Envoy with panic off)', async () => {
    mode = 'fail';
    await sequential('nopanic', 60);
    expect((await state('nopanic')).outlierDetection).toEqual({ ejectionsActive: 3, panic: false });
    mode = 'ok';
    const before = attempts();
    expect(await sequential('nopanic', 5)).toEqual({ '503 no_healthy_endpoints': 5 });
    expect(attempts()).toBe(before);
  });
});
