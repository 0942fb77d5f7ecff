// A 503 no_healthy_endpoints is no breaker success: no outcome when nothing was sent, a failure after a failed attempt.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { upstreamState } from '../helpers/upstream-state.ts';

/** Every endpoint may be ejected, and with panic off an upstream with none left answers 503 no_healthy_endpoints. */
const EJECT_ALL = {
  consecutive5xx: 1,
  consecutiveGatewayFailure: 1,
  baseEjectionTime: '60s',
  maxEjectionPercent: 100,
  panicThreshold: 0,
};

describe('503 no_healthy_endpoints and the breaker', () => {
  /** How the endpoints answer: 500, or 503 (a retriable gateway error). */
  let status = 500;
  const endpoints: TestUpstream[] = [];
  /** A port nothing listens on: every connect to it is refused. */
  let closedPort = 0;
  let mesh: InProcessMeshlet;
  const agent = new Agent({ connections: 4 });

  beforeAll(async () => {
    for (let i = 0; i < 4; i++) {
      endpoints.push(
        await startUpstream((req, res) => {
          req.resume();
          res.statusCode = status;
          res.end('boom');
        }),
      );
    }
    const gone = await startUpstream();
    closedPort = gone.port;
    await gone.close();
    const [a, b, c, d] = endpoints.map((e) => e.endpoint);
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { none: [a!, b!], last: [c!, d!], down: [`127.0.0.1:${closedPort}`] },
      },
      upstreams: {
        // Nothing connects: the request fails over to `none`, whose every endpoint is ejected.
        down: { fallback: 'none', retries: { attempts: 1 }, outlierDetection: { enabled: false } },
        none: {
          retries: { attempts: 1 },
          outlierDetection: EJECT_ALL,
          circuitBreaker: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeout: '200ms' },
        },
        last: {
          retries: { attempts: 2 },
          outlierDetection: EJECT_ALL,
          circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 50, resetTimeout: '200ms' },
        },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await agent.close();
    await Promise.all(endpoints.map((u) => u.close()));
  });

  async function get(host: string): Promise<string> {
    const res = await request(`${mesh.outbound}/`, { headers: { host }, dispatcher: agent });
    await res.body.dump();
    return `${res.statusCode} ${String(res.headers['x-meshlet-error'] ?? 'endpoint')} attempts=${String(res.headers['x-meshlet-attempts'])}`;
  }

  async function untilHalfOpen(name: string): Promise<void> {
    const t0 = performance.now();
    while ((await upstreamState(mesh.admin, name)).circuitBreaker !== 'half_open') {
      expect(performance.now() - t0).toBeLessThan(3000);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('a half-open trial that finds no endpoint (nothing sent) neither closes nor reopens the breaker', async () => {
    status = 500;
    // Both endpoints fail once each: both ejected, and 2 failures of 2 open the breaker.
    expect(await get('none')).toBe('500 endpoint attempts=1');
    expect(await get('none')).toBe('500 endpoint attempts=1');
    const state = await upstreamState(mesh.admin, 'none');
    expect(state.healthy).toBe(0);
    expect(state.circuitBreaker).toBe('open');
    await untilHalfOpen('none');
    // The trial finds no endpoint: meshlet's own refusal, no outcome (it closed the breaker: a success).
    expect(await get('none')).toBe('503 no_healthy_endpoints attempts=0');
    expect((await upstreamState(mesh.admin, 'none')).circuitBreaker).toBe('half_open');
    // The trial slot was freed: the next request is the trial again, and it too tells nothing.
    expect(await get('none')).toBe('503 no_healthy_endpoints attempts=0');
    expect((await upstreamState(mesh.admin, 'none')).circuitBreaker).toBe('half_open');
  });

  it("a request failed over to a fallback that finds no endpoint is no outcome for the fallback's breaker", async () => {
    // `none` (the fallback) is half-open with no endpoint, as the test before left it.
    expect((await upstreamState(mesh.admin, 'none')).circuitBreaker).toBe('half_open');
    expect(closedPort).toBeGreaterThan(0);
    // One attempt on `down` (connect refused), then `none`'s trial finds no endpoint: the attempt
    // was the primary's, so the fallback's breaker hears nothing (not a success, not a failure).
    expect(await get('down')).toBe('503 no_healthy_endpoints attempts=1');
    expect((await upstreamState(mesh.admin, 'none')).circuitBreaker).toBe('half_open');
  });

  it('a half-open trial whose retry finds no endpoint left counts its failed attempt: the breaker reopens', async () => {
    status = 500;
    // One failure opens the breaker (volumeThreshold 1) and ejects one endpoint; the other is left.
    expect(await get('last')).toBe('500 endpoint attempts=1');
    const state = await upstreamState(mesh.admin, 'last');
    expect(state.healthy).toBe(1);
    expect(state.circuitBreaker).toBe('open');
    await untilHalfOpen('last');
    // The trial's 503 ejects the last endpoint; its retry finds none (it closed the breaker: a success).
    status = 503;
    expect(await get('last')).toBe('503 no_healthy_endpoints attempts=1');
    expect((await upstreamState(mesh.admin, 'last')).circuitBreaker).toBe('open');
  });
});
