// Limits refuse at once, deadlines cap the timeout, and a fallback upstream serves when the primary cannot.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('limits, deadlines and fallback', () => {
  let hold: TestUpstream;
  let release: () => void = () => {};
  let slow: TestUpstream;
  let backup: TestUpstream;
  let failing: TestUpstream;
  let mesh: InProcessMeshlet;
  const agent = new Agent({ connections: 10 });

  let refusing: number;

  beforeAll(async () => {
    refusing = await closedPort();
    let gate = new Promise<void>((r) => {
      release = r;
    });
    hold = await startUpstream((req, res) => {
      req.resume();
      gate.then(() => res.end('released'));
    });
    slow = await startUpstream((req, res) => {
      req.resume();
      setTimeout(() => res.end('late'), 2000).unref();
    });
    backup = await startUpstream();
    failing = await startUpstream((req, res) => {
      req.resume();
      res.statusCode = 500;
      res.end('boom');
    });
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          held: [hold.endpoint],
          slow: [slow.endpoint],
          backup: [backup.endpoint],
          flaky: [failing.endpoint],
          down: [`127.0.0.1:${refusing}`],
        },
      },
      upstreams: {
        held: { limits: { maxConcurrent: 3 } },
        slow: { retries: { attempts: 1 } },
        empty: { fallback: 'backup' },
        down: { fallback: 'backup' },
        flaky: {
          fallback: 'backup',
          retries: { attempts: 1 },
          circuitBreaker: { volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeout: '30s' },
        },
      },
      accessLog: { enabled: false },
    });
    gate = gate.then(() => undefined);
  });
  afterAll(async () => {
    release();
    await mesh.close();
    await agent.close();
    await Promise.all([hold, slow, backup, failing].map((u) => u.close()));
  });

  it('concurrency limit N: request N+1 gets 503 overloaded and the upstream never sees it', async () => {
    const held = Array.from({ length: 3 }, () =>
      request(`${mesh.outbound}/`, { headers: { host: 'held' }, dispatcher: agent }),
    );
    const t0 = performance.now();
    while (hold.requests.length < 3 && performance.now() - t0 < 3000)
      await new Promise((r) => setTimeout(r, 10));
    expect(hold.requests.length).toBe(3);
    const extra = await request(`${mesh.outbound}/`, { headers: { host: 'held' }, dispatcher: agent });
    expect(extra.statusCode).toBe(503);
    expect(extra.headers['x-meshlet-error']).toBe('overloaded');
    await extra.body.dump();
    expect(hold.requests.length).toBe(3);
    release();
    for (const res of await Promise.all(held)) {
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_overflows_total\{upstream="held",limit="request"\} 1$/m);
  });

  it('x-meshlet-timeout-ms: 200 to a slow upstream → 504 within 250 ms, and the budget goes upstream', async () => {
    // Warm the path (connection, JIT) once; the acceptance line is about the deadline, not start-up.
    await (
      await request(`${mesh.outbound}/`, { headers: { host: 'slow', 'x-meshlet-timeout-ms': '50' } })
    ).body.dump();
    const t0 = performance.now();
    const res = await request(`${mesh.outbound}/`, {
      headers: { host: 'slow', 'x-meshlet-timeout-ms': '200' },
    });
    const elapsed = performance.now() - t0;
    expect(res.statusCode).toBe(504);
    expect(res.headers['x-meshlet-error']).toBe('upstream_timeout');
    await res.body.dump();
    expect(elapsed).toBeLessThan(250);
    const sent = Number(slow.requests.at(-1)?.headers['x-meshlet-timeout-ms']);
    expect(sent).toBeGreaterThan(150);
    expect(sent).toBeLessThanOrEqual(200);
  });

  it('an upstream with no endpoints is served by its fallback', async () => {
    const res = await request(`${mesh.outbound}/via-fallback`, { headers: { host: 'empty' } });
    expect(res.statusCode).toBe(200);
    expect(Number(res.headers['x-upstream-port'])).toBe(backup.port);
    await res.body.dump();
  });

  it('an upstream whose breaker is open is served by its fallback', async () => {
    for (let i = 0; i < 10; i++) {
      const res = await request(`${mesh.outbound}/`, { headers: { host: 'flaky' } });
      await res.body.dump();
    }
    const before = failing.requests.length;
    const res = await request(`${mesh.outbound}/`, { headers: { host: 'flaky' } });
    expect(res.statusCode).toBe(200);
    expect(Number(res.headers['x-upstream-port'])).toBe(backup.port);
    await res.body.dump();
    expect(failing.requests.length).toBe(before);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_failovers_total\{upstream="flaky",fallback="backup"\} [1-9]/m);
  });

  it('a primary whose only endpoint refuses connections is served by its fallback: 5 of 5, POST too', async () => {
    const before = backup.requests.length;
    for (let i = 0; i < 5; i++) {
      const res = await request(`${mesh.outbound}/order/${i}`, {
        method: i % 2 === 0 ? 'GET' : 'POST',
        headers: { host: 'down' },
        body: i % 2 === 0 ? undefined : `order ${i}`,
      });
      expect(res.statusCode).toBe(200);
      expect(Number(res.headers['x-upstream-port'])).toBe(backup.port);
      await res.body.dump();
    }
    expect(backup.requests.slice(before).map((r) => r.url)).toEqual(
      [0, 1, 2, 3, 4].map((i) => `/order/${i}`),
    );
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_failovers_total\{upstream="down",fallback="backup"\} 5$/m);
  });
});

describe('deadlines at the gateway', () => {
  it("a client's x-meshlet-timeout-ms or grpc-timeout is not taken at the edge: no 504s, no endpoint ejected", async () => {
    // Answers after 30 ms: longer than the 1 ms the client asks for, well within the route's timeout.
    const app = await startUpstream((req, res) => {
      req.resume();
      setTimeout(() => res.end('ok'), 30);
    });
    const m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { web: [app.endpoint] } },
      gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'web' }] },
      accessLog: { enabled: false },
    });
    try {
      const gw = `http://127.0.0.1:${m.daemon.addresses().gateway!.port}`;
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) {
        const header = i % 2 === 0 ? { 'x-meshlet-timeout-ms': '1' } : { 'grpc-timeout': '1m' };
        const res = await request(`${gw}/x`, { headers: header });
        statuses.push(res.statusCode);
        await res.body.dump();
      }
      expect(statuses).toEqual(Array(12).fill(200));
      // What the app was told is the route's own budget (15 s by default), not the client's 1 ms.
      const told = Number(app.requests.at(-1)?.headers['x-meshlet-timeout-ms']);
      expect(told).toBeGreaterThan(10_000);
      const state = (await (await request(`${m.admin}/upstreams`)).body.json()) as {
        upstreams: Record<string, { healthy: number; total: number }>;
      };
      expect(state.upstreams.web).toMatchObject({ healthy: 1, total: 1 });
    } finally {
      await m.close();
      await app.close();
    }
  });
});
