// Retries never resend a request the app may have processed, unless it is idempotent or keyed.
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('safe retries', () => {
  let resetter: TestUpstream;
  let headThenReset: TestUpstream;
  let ok: TestUpstream;
  let flaky: TestUpstream;
  let mesh: InProcessMeshlet;
  let flakyCalls = 0;

  beforeAll(async () => {
    // Reads the whole request, then resets the connection without answering.
    resetter = await startUpstream((req) => {
      req.resume();
      req.on('end', () => (req.socket as Socket).resetAndDestroy());
    });
    // Sends response headers and part of the body, then resets.
    headThenReset = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setTimeout(() => (req.socket as Socket).resetAndDestroy(), 20);
    });
    ok = await startUpstream();
    // 503 twice, then 200: a GET is retried through it.
    flaky = await startUpstream((req, res) => {
      req.resume();
      flakyCalls++;
      res.writeHead(flakyCalls <= 2 ? 503 : 200, { 'retry-after': '0' });
      res.end(flakyCalls <= 2 ? 'unavailable' : 'ok');
    });
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          resets: [resetter.endpoint],
          partial: [headThenReset.endpoint],
          halfdead: [`127.0.0.1:${await closedPort()}`, ok.endpoint],
          flaky: [flaky.endpoint],
        },
      },
      upstreams: {
        resets: {
          retries: { retryOn: ['connect-failure', 'reset', 'gateway-error'] },
          outlierDetection: { enabled: false },
        },
        partial: { retries: { retryOn: ['connect-failure', 'reset', 'gateway-error'] } },
        halfdead: { loadBalancer: 'round_robin', outlierDetection: { enabled: false } },
        flaky: { retries: { retryOn: ['gateway-error'] } },
      },
      routes: [{ match: { pathPrefix: '/once/' }, upstream: 'resets', retries: { attempts: 1 } }],
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await Promise.all([resetter.close(), headThenReset.close(), ok.close(), flaky.close()]);
  });

  it('a POST without Idempotency-Key that reached the app is not retried: counted once, client gets 502', async () => {
    const before = resetter.requests.length;
    const res = await request(`${mesh.outbound}/pay`, {
      method: 'POST',
      headers: { host: 'resets' },
      body: 'charge=5',
    });
    expect(res.statusCode).toBe(502);
    expect(res.headers['x-meshlet-error']).toBe('upstream_unreachable');
    expect(res.headers['x-meshlet-attempts']).toBe('1');
    await res.body.dump();
    expect(resetter.requests.length - before).toBe(1);
  });

  it('the same POST with an Idempotency-Key is retried', async () => {
    const before = resetter.requests.length;
    const res = await request(`${mesh.outbound}/pay`, {
      method: 'POST',
      headers: { host: 'resets', 'idempotency-key': 'k-1' },
      body: 'charge=5',
    });
    expect(res.statusCode).toBe(502);
    expect(res.headers['x-meshlet-attempts']).toBe('3');
    await res.body.dump();
    expect(resetter.requests.length - before).toBe(3);
  });

  it('a GET that met a reset is retried (idempotent)', async () => {
    const before = resetter.requests.length;
    const res = await request(`${mesh.outbound}/read`, { headers: { host: 'resets' } });
    await res.body.dump();
    expect(res.statusCode).toBe(502);
    expect(resetter.requests.length - before).toBe(3);
  });

  it('a POST that met connection-refused is retried on another endpoint', async () => {
    for (let i = 0; i < 4; i++) {
      const res = await request(`${mesh.outbound}/submit`, {
        method: 'POST',
        headers: { host: 'halfdead' },
        body: `n=${i}`,
      });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
    expect(ok.requests.filter((r) => r.method === 'POST')).toHaveLength(4);
  });

  it('nothing is retried once response headers went to the client', async () => {
    const before = headThenReset.requests.length;
    const res = await request(`${mesh.outbound}/stream`, { headers: { host: 'partial' } });
    expect(res.statusCode).toBe(200);
    await expect(res.body.text()).rejects.toThrow();
    expect(headThenReset.requests.length - before).toBe(1);
  });

  it('a GET answered 503 is retried and the response carries x-meshlet-attempts', async () => {
    const res = await request(`${mesh.outbound}/x`, { headers: { host: 'flaky' } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('ok');
    expect(res.headers['x-meshlet-attempts']).toBe('3');
  });

  it('a 503 whose body never ends is dropped at once and retried: the client gets the next 200 well within timeouts.request', async () => {
    let calls = 0;
    const trickles: NodeJS.Timeout[] = [];
    const endless = await startUpstream((req, res) => {
      req.resume();
      if (++calls > 1) return void res.end('ok');
      res.writeHead(503, { 'retry-after': '0' });
      trickles.push(setInterval(() => res.write('.'), 100));
    });
    const m = await startMeshlet({
      registry: { type: 'static', endpoints: { endless: [endless.endpoint] } },
      upstreams: { endless: { retries: { retryOn: ['gateway-error'] }, timeouts: { request: '2s' } } },
      accessLog: { enabled: false },
    });
    try {
      const started = performance.now();
      const res = await request(`${m.outbound}/x`, { headers: { host: 'endless' } });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('ok');
      expect(res.headers['x-meshlet-attempts']).toBe('2');
      // Reading the 503 to its end would never finish; the request timeout (2 s) would answer 504.
      expect(performance.now() - started).toBeLessThan(1500);
    } finally {
      for (const t of trickles) clearInterval(t);
      await m.close();
      await endless.close();
    }
  });

  it('a route overrides its upstream retry policy', async () => {
    const before = resetter.requests.length;
    const res = await request(`${mesh.outbound}/once/read`);
    expect(res.statusCode).toBe(502);
    expect(res.headers['x-meshlet-attempts']).toBe('1');
    await res.body.dump();
    expect(resetter.requests.length - before).toBe(1);
  });
});
