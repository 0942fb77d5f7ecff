// Hostile deadlines from callers (x-meshlet-timeout-ms, grpc-timeout) and huge configured timeouts: clear handling, no endpoint blamed.
import { describe, expect, it } from 'vitest';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { scrapeMetrics } from '../helpers/metrics.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { upstreamState } from '../helpers/upstream-state.ts';

describe('deadlines a caller sends, and timeouts past what a Node timer holds', () => {
  const suite = meshletSuite(
    (slow) => ({
      registry: { type: 'static', endpoints: { slow: [slow.endpoint], huge: [slow.endpoint] } },
      upstreams: {
        slow: {
          timeouts: { request: '2s' },
          circuitBreaker: { volumeThreshold: 5, errorThresholdPercentage: 50 },
          outlierDetection: { consecutiveGatewayFailure: 2, consecutive5xx: 2, maxEjectionPercent: 100 },
        },
        // 1000 h = 3.6e9 ms, past 2^31 − 1: Node would fire such a timer after 1 ms.
        huge: { timeouts: { request: '1000h', idle: '1000h' } },
      },
      accessLog: { enabled: false },
    }),
    // Answers after 300 ms: inside the 2 s route timeout, outside a 100 ms caller deadline.
    (req, res) => {
      req.resume();
      setTimeout(() => res.end('late'), 300).unref();
    },
  );

  /** Sends a raw request (so headers can repeat or carry odd values); returns the reply and what the endpoint saw. */
  async function send(host: string, extra: string) {
    const { up: slow, port } = suite;
    const before = slow.requests.length;
    const t0 = performance.now();
    const reply = await rawRequest(
      port,
      `GET / HTTP/1.1\r\nhost: ${host}\r\n${extra}connection: close\r\n\r\n`,
      5000,
    );
    const ms = performance.now() - t0;
    const seen = slow.requests.slice(before);
    return { ...parseReply(reply), ms, seen, sent: Number(seen[0]?.headers['x-meshlet-timeout-ms']) };
  }

  it('timeouts.request: 1000h waits for a 300 ms endpoint: 200 after one attempt (the timer does not fire after 1 ms)', async () => {
    const r = await send('huge', '');
    expect(r.status).toBe(200);
    expect(r.headers['x-meshlet-attempts']).toBe('1');
    expect(r.ms).toBeGreaterThanOrEqual(250);
    expect(r.seen).toHaveLength(1);
  });

  it.each([
    ['x-meshlet-timeout-ms: -1'],
    ['x-meshlet-timeout-ms: 1e30'],
    ['x-meshlet-timeout-ms: abc'],
    ['x-meshlet-timeout-ms: 99999999999999999999'],
    ['x-meshlet-timeout-ms: 100\r\nx-meshlet-timeout-ms: 5000'],
    ['grpc-timeout: 100000000m'],
    ['grpc-timeout: 1s'],
    ['grpc-timeout: 1x'],
    ['grpc-timeout: '],
    ['grpc-timeout: 100m\r\ngrpc-timeout: 5S'],
  ])('a malformed or repeated deadline (%j) is ignored: the route timeout (2 s) governs', async (header) => {
    const r = await send('slow', `${header}\r\n`);
    expect(r.status).toBe(200);
    expect(r.sent).toBeGreaterThan(1500);
    expect(r.sent).toBeLessThanOrEqual(2000);
  });

  it.each([
    ['x-meshlet-timeout-ms: 9999999999', 2000],
    ['grpc-timeout: 99999999H', 2000],
    ['grpc-timeout: 1H', 2000],
    ['grpc-timeout: 1M', 2000],
    ['grpc-timeout: 1S', 1000],
  ])('a deadline past the route timeout (%j) is capped by it', async (header, cap) => {
    const r = await send('slow', `${header}\r\n`);
    expect(r.status).toBe(200);
    expect(r.sent).toBeGreaterThan(cap - 500);
    expect(r.sent).toBeLessThanOrEqual(cap);
  });

  it.each([
    ['x-meshlet-timeout-ms: 100'],
    ['grpc-timeout: 100m'],
    ['grpc-timeout: 100000u'],
    ['grpc-timeout: 99999999n'],
  ])(
    'a 100 ms deadline (%j) ends in 504 upstream_timeout after ~100 ms, and tells the endpoint 100',
    async (header) => {
      const r = await send('slow', `${header}\r\n`);
      expect(r.status).toBe(504);
      expect(r.headers['x-meshlet-error']).toBe('upstream_timeout');
      expect(r.ms).toBeGreaterThanOrEqual(90);
      expect(r.ms).toBeLessThan(290);
      expect(r.sent).toBe(100);
    },
  );

  it("a caller's 100 ms deadline against a 300 ms endpoint, 12 times: 504s, yet no breaker opens and no endpoint is ejected", async () => {
    for (let i = 0; i < 12; i++) {
      const r = await send('slow', 'x-meshlet-timeout-ms: 100\r\n');
      expect(r.status).toBe(504);
      expect(r.seen).toHaveLength(1);
    }
    // The endpoint answers within the route's own timeouts: the caller chose too short a wait.
    expect(await upstreamState(suite.mesh.admin, 'slow')).toMatchObject({
      circuitBreaker: 'closed',
      healthy: 1,
    });
    const metrics = await scrapeMetrics(suite.mesh.admin);
    expect(metrics).toMatch(
      /^meshlet_upstream_attempts_total\{upstream="slow",result="timeout"\} (1[2-9]|[2-9]\d)$/m,
    );
    expect((await send('slow', '')).status).toBe(200);
  });

  it('deadlines of 0 (or below 10 ms) end at once with 504 and nothing sent; 30 of them open no breaker and eject nothing', async () => {
    for (const header of [
      'x-meshlet-timeout-ms: 0',
      'x-meshlet-timeout-ms:  5 ',
      'grpc-timeout: 0m',
      'grpc-timeout: 1n',
    ]) {
      for (let i = 0; i < 8; i++) {
        const r = await send('slow', `${header}\r\n`);
        expect(r.status).toBe(504);
        expect(r.headers['x-meshlet-error']).toBe('upstream_timeout');
        expect(r.headers['x-meshlet-attempts']).toBe('0');
        expect(r.seen).toHaveLength(0);
        expect(r.ms).toBeLessThan(100);
      }
    }
    expect(await upstreamState(suite.mesh.admin, 'slow')).toMatchObject({
      circuitBreaker: 'closed',
      healthy: 1,
    });
    expect((await send('slow', '')).status).toBe(200);
  });
});
