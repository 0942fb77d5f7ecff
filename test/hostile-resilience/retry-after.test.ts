// Retry-After from endpoints (huge, past, future, negative, garbage) and slow or cut answers: retries stay inside the deadline.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { scrapeMetrics } from '../helpers/metrics.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { upstreamState } from '../helpers/upstream-state.ts';

describe('endpoints that ask callers to come back later', () => {
  /** The Retry-After value the `ra` endpoint sends with its 503, and whether the next request gets 200. */
  let retryAfter = '';
  let answerStatus = 503;
  let ra: TestUpstream;
  let flip: TestUpstream;
  let midBody: TestUpstream;
  let steady: TestUpstream;
  let slowRetry: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    ra = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(answerStatus, { 'retry-after': retryAfter });
      res.end('busy');
    });
    // 503 + Retry-After on a request's first attempt, 200 on its retry (the x-request-id stays the same).
    const seenIds = new Set<string>();
    flip = await startUpstream((req, res) => {
      req.resume();
      const id = String(req.headers['x-request-id']);
      if (seenIds.has(id)) return void res.end('ok');
      seenIds.add(id);
      res.writeHead(503, { 'retry-after': retryAfter });
      res.end('busy');
    });
    // Sends the head and 100 of 1000 bytes, then resets the connection.
    midBody = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '1000' });
      res.write('x'.repeat(100));
      setTimeout(() => res.socket?.destroy(), 30).unref();
    });
    steady = await startUpstream();
    // 503 at once on a request's first attempt; its retry hangs.
    const retried = new Set<string>();
    slowRetry = await startUpstream((req, res) => {
      req.resume();
      const id = String(req.headers['x-request-id']);
      if (retried.has(id)) return;
      retried.add(id);
      res.statusCode = 503;
      res.end('busy');
    });
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          ra: [ra.endpoint],
          flip: [flip.endpoint],
          flipcap: [flip.endpoint],
          mid: [midBody.endpoint, steady.endpoint],
          slowretry: [slowRetry.endpoint],
        },
      },
      upstreams: {
        ra: {
          retries: { retryOn: ['gateway-error', 429], retryAfterMax: '3s' },
          circuitBreaker: { enabled: false },
        },
        flip: { retries: { retryAfterMax: '3s' }, circuitBreaker: { enabled: false } },
        flipcap: { retries: { retryAfterMax: '300ms' }, circuitBreaker: { enabled: false } },
        mid: {
          loadBalancer: 'round_robin',
          retries: { retryOn: ['gateway-error', 'reset'] },
          outlierDetection: { consecutiveGatewayFailure: 2 },
        },
        slowretry: { timeouts: { request: '600ms' }, circuitBreaker: { enabled: false } },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await Promise.all([ra, flip, midBody, steady, slowRetry].map((u) => u.close()));
  });

  async function get(host: string, headers: Record<string, string> = {}) {
    const t0 = performance.now();
    const res = await request(`${mesh.outbound}/`, { headers: { host, ...headers } });
    const body = await res.body.text();
    return { res, body, ms: performance.now() - t0 };
  }

  it.each([
    ['503', '2'],
    ['503', '1000000000'],
    ['429', new Date(Date.now() + 100 * 365 * 86_400_000).toUTCString()],
  ])(
    'a %s asking for more time (Retry-After %j) than the caller has left is passed on at once, not turned into a 504',
    async (status, value) => {
      answerStatus = Number(status);
      retryAfter = value;
      const before = ra.requests.length;
      const { res, ms } = await get('ra', { 'x-meshlet-timeout-ms': '500' });
      expect(res.statusCode).toBe(Number(status));
      expect(res.headers['x-meshlet-error']).toBeUndefined();
      expect(res.headers['retry-after']).toBe(value);
      expect(res.headers['x-meshlet-attempts']).toBe('1');
      expect(ms).toBeLessThan(300);
      expect(ra.requests.length - before).toBe(1);
    },
  );

  it('a Retry-After within the deadline is waited for, then the retry answers', async () => {
    retryAfter = '1';
    const { res, body, ms } = await get('flip');
    expect(res.statusCode).toBe(200);
    expect(body).toBe('ok');
    expect(res.headers['x-meshlet-attempts']).toBe('2');
    expect(ms).toBeGreaterThanOrEqual(950);
    expect(ms).toBeLessThan(2000);
  });

  it.each([['1000000000'], [new Date(Date.now() + 100 * 365 * 86_400_000).toUTCString()], ['9'.repeat(400)]])(
    'a huge Retry-After (%j) is waited for only up to retryAfterMax (300 ms)',
    async (value) => {
      retryAfter = value;
      const { res, ms } = await get('flipcap');
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-meshlet-attempts']).toBe('2');
      expect(ms).toBeGreaterThanOrEqual(280);
      expect(ms).toBeLessThan(1000);
    },
  );

  it.each([[new Date(Date.now() - 3_600_000).toUTCString()], ['-5'], ['soon'], ['1.5'], ['']])(
    'a Retry-After in the past or malformed (%j) falls back to the jittered backoff (≤ 25 ms)',
    async (value) => {
      retryAfter = value;
      const { res, ms } = await get('flip');
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-meshlet-attempts']).toBe('2');
      expect(ms).toBeLessThan(250);
    },
  );

  it('a reset after the head and part of the body: the caller gets the cut body, no retry, the endpoint is counted and ejected', async () => {
    const cut: string[] = [];
    for (let i = 0; i < 4; i++) {
      const before = midBody.requests.length + steady.requests.length;
      const res = await request(`${mesh.outbound}/`, { headers: { host: 'mid' } });
      let got = 0;
      let error = '';
      try {
        for await (const chunk of res.body) got += (chunk as Buffer).length;
      } catch (err) {
        error = String(err);
      }
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-meshlet-attempts']).toBe('1');
      expect(midBody.requests.length + steady.requests.length - before).toBe(1);
      if (error !== '') {
        expect(got).toBe(100);
        cut.push(error);
      }
    }
    // Round robin over [midBody, steady]: two of the four reached midBody and were cut.
    expect(cut).toHaveLength(2);
    const metrics = await scrapeMetrics(mesh.admin);
    expect(metrics).toMatch(/^meshlet_upstream_attempts_total\{upstream="mid",result="reset"\} 2$/m);
    expect(metrics).not.toMatch(/^meshlet_retries_total\{upstream="mid"/m);
    expect(metrics).toMatch(/^meshlet_outlier_ejections_total\{upstream="mid",kind="gateway"\} 1$/m);
    expect(await upstreamState(mesh.admin, 'mid')).toMatchObject({ healthy: 1, total: 2 });
  });

  it('an endpoint that hangs only on retries: the request ends with 504 at its 600 ms deadline, never later', async () => {
    const { res, ms } = await get('slowretry');
    expect(res.statusCode).toBe(504);
    expect(res.headers['x-meshlet-error']).toBe('upstream_timeout');
    expect(res.headers['x-meshlet-attempts']).toBe('2');
    expect(ms).toBeGreaterThanOrEqual(580);
    expect(ms).toBeLessThan(900);
  });
});
