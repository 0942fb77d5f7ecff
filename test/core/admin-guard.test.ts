// Mutating admin calls refuse cross-origin and DNS-rebound requests (Origin, Host), token or not.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { rawRequest } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

const TOKEN = 'admin-token-1234';

describe('admin guard against browsers: Origin and Host on mutating calls', () => {
  let app: TestUpstream;
  let mesh: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    app = await startUpstream((req, res) => {
      req.resume();
      res.statusCode = 503;
      res.end('down');
    });
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: [app.endpoint] } },
      upstreams: {
        users: {
          retries: { attempts: 1 },
          circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeout: '60s' },
        },
      },
      accessLog: { enabled: false },
    });
    port = Number(new URL(mesh.admin).port);
  });
  afterAll(async () => {
    await mesh.close();
    await app.close();
  });

  async function breaker(): Promise<string> {
    const res = await request(`${mesh.admin}/upstreams`);
    const body = (await res.body.json()) as { upstreams: Record<string, { circuitBreaker: string }> };
    return body.upstreams.users!.circuitBreaker;
  }

  async function openBreaker(): Promise<void> {
    for (let i = 0; i < 50 && (await breaker()) !== 'open'; i++) {
      const res = await request(`${mesh.outbound}/`, { headers: { host: 'users' } });
      await res.body.dump();
    }
    expect(await breaker()).toBe('open');
  }

  async function reset(headers: Record<string, string>): Promise<{ status: number; body: unknown }> {
    const res = await request(`${mesh.admin}/upstreams/users/breaker/reset`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', ...headers },
      body: 'x',
    });
    return { status: res.statusCode, body: await res.body.json() };
  }

  it('a blind cross-origin POST (Origin: http://evil.example) → 403, and the breaker stays open', async () => {
    await openBreaker();
    const answer = await reset({ origin: 'http://evil.example' });
    expect(answer.status).toBe(403);
    expect(answer.body).toEqual({
      error: 'forbidden',
      message: expect.stringMatching(/Origin http:\/\/evil\.example/),
    });
    expect(await breaker()).toBe('open');
    // The same call from a loopback page goes through.
    const loopback = await reset({ origin: `http://127.0.0.1:${port}` });
    expect(loopback).toEqual({ status: 200, body: { upstream: 'users', circuitBreaker: 'closed' } });
  });

  it('Origin: null and look-alike origins are not loopback → 403', async () => {
    await openBreaker();
    for (const origin of ['null', 'http://localhost.evil.example', 'file://', 'http://128.0.0.1']) {
      expect((await reset({ origin })).status).toBe(403);
    }
    expect(await breaker()).toBe('open');
  });

  it('a DNS-rebound request (Host: evil.example:PORT) → 403, and the breaker stays open', async () => {
    await openBreaker();
    const answer = await reset({ host: `evil.example:${port}` });
    expect(answer.status).toBe(403);
    expect(answer.body).toEqual({ error: 'forbidden', message: expect.stringMatching(/Host evil\.example/) });
    // The right name on another port, and a port-less Host (port 80), are not this listener either.
    expect((await reset({ host: `127.0.0.1:${port + 1}` })).status).toBe(403);
    expect((await reset({ host: 'localhost' })).status).toBe(403);
    expect(await breaker()).toBe('open');
    // The listener's own names, with or without a loopback Origin, go through.
    const accepted: Record<string, string>[] = [
      { origin: 'https://localhost:3000', host: `localhost:${port}` },
      { origin: 'http://[::1]', host: `127.0.0.1:${port}` },
      { host: `LOCALHOST:${port}` },
      {},
    ];
    for (const headers of accepted) {
      await openBreaker();
      const answer = await reset(headers);
      expect(answer).toEqual({ status: 200, body: { upstream: 'users', circuitBreaker: 'closed' } });
    }
  });

  it('a request without Host (HTTP/1.0) → 403', async () => {
    const reply = await rawRequest(port, 'POST /upstreams/users/breaker/reset HTTP/1.0\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 403 /);
    expect(reply).toContain('no Host header');
  });

  it('with a token configured, a correct bearer from a bad Origin → 403', async () => {
    const tokened = await startMeshlet({
      listeners: { admin: { port: 0, token: TOKEN } },
      registry: { type: 'static', endpoints: { users: [app.endpoint] } },
    });
    try {
      const call = (headers: Record<string, string>) =>
        request(`${tokened.admin}/upstreams/users/breaker/reset`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, ...headers },
        }).then(async (r) => ({ status: r.statusCode, body: await r.body.json() }));
      const evil = await call({ origin: 'http://evil.example' });
      expect(evil).toEqual({
        status: 403,
        body: { error: 'forbidden', message: expect.stringMatching(/Origin/) },
      });
      expect((await call({ host: 'evil.example' })).status).toBe(403);
      expect((await call({})).status).toBe(200);
    } finally {
      await tokened.close();
    }
  });
});
