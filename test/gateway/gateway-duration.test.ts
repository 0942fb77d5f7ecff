// A gateway request's duration (access line, duration histogram) starts when the gateway took it: time spent authenticating (a slow JWKS fetch) is in it.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echoClient, grpc, startEchoServer, unary, type EchoServer } from '../helpers/grpc.ts';
import { h2Exchange } from '../helpers/h2-request.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { scrapeMetrics, sampleValue } from '../helpers/metrics.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { accessLine } from '../observability/access-lines.ts';
import { call, gatewayUrl, mint, type SigningKey, signingKey } from './fixtures.ts';

/** How long the JWKS server takes to answer each fetch, ms. */
const JWKS_DELAY_MS = 400;
/** Timer and clock slack allowed below the JWKS delay, ms. */
const TOLERANCE_MS = 20;
const DURATION = 'meshlet_request_duration_seconds';

/** A JWKS server on 127.0.0.1 that answers every fetch (any path) after {@link JWKS_DELAY_MS}; counts fetches by path. */
async function startSlowJwks(
  keys: () => unknown[],
): Promise<{ url: (path: string) => string; fetches: Map<string, number>; close(): Promise<void> }> {
  const fetches = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    fetches.set(path, (fetches.get(path) ?? 0) + 1);
    const timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: keys() }));
    }, JWKS_DELAY_MS);
    res.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    fetches,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The duration histogram's `_sum`, `_count` and `le="0.25"` bucket of one series. */
async function durations(
  admin: string,
  upstream: string,
  statusClass: string,
): Promise<{ sum: number; count: number; fast: number }> {
  const text = await scrapeMetrics(admin);
  const labels = { direction: 'outbound', upstream, status_class: statusClass };
  return {
    sum: sampleValue(text, `${DURATION}_sum`, labels),
    count: sampleValue(text, `${DURATION}_count`, labels),
    fast: sampleValue(text, `${DURATION}_bucket`, { le: '0.25', ...labels }),
  };
}

describe('gateway request duration covers authentication', () => {
  let upstream: TestUpstream;
  let echo: EchoServer;
  let jwks: Awaited<ReturnType<typeof startSlowJwks>>;
  let key: SigningKey;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    echo = await startEchoServer('echo-1');
    key = await signingKey('k1');
    jwks = await startSlowJwks(() => [key.jwk]);
    // One authenticator per case, each with its own JWKS path: each case's request is its
    // authenticator's first use, so it waits for the (slow) JWKS fetch.
    const jwt = (path: string) => ({ type: 'jwt' as const, jwksUrl: jwks.url(path), audience: 'api' });
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { users: [upstream.endpoint], echo: [echo.endpoint] } },
      upstreams: { echo: { protocol: 'grpc' } },
      gateway: {
        auth: { h1: jwt('/h1'), h2: jwt('/h2'), grpc: jwt('/grpc'), refuse: jwt('/refuse') },
        routes: [
          { match: { pathPrefix: '/h1/' }, upstream: 'users', auth: ['h1'] },
          { match: { pathPrefix: '/h2/' }, upstream: 'users', auth: ['h2'] },
          { match: { pathPrefix: '/meshlet.test.v1.Echo/' }, upstream: 'echo', auth: ['grpc'] },
          { match: { pathPrefix: '/refuse/' }, upstream: 'users', auth: ['refuse'] },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m?.close();
    await upstream?.close();
    echo?.close();
    await jwks?.close();
  });

  it('HTTP/1.1: a forwarded request that waited for the JWKS has durationMs and a histogram observation of at least that wait', async () => {
    const before = await durations(m.admin, 'users', '2xx');
    const token = await mint(key, { sub: 'u-1', aud: 'api' });
    const sentAt = performance.now();
    const res = await call(gw, '/h1/x', { authorization: `Bearer ${token}` });
    const elapsedMs = performance.now() - sentAt;
    expect(res.status).toBe(200);
    expect(jwks.fetches.get('/h1')).toBe(1);
    const line = await accessLine(m, (l) => l.requestId === res.headers['x-request-id']);
    expect(line).toMatchObject({
      path: '/h1/x',
      upstream: 'users',
      status: 200,
      attempts: 1,
      subject: 'u-1',
    });
    expect(line.durationMs as number).toBeGreaterThanOrEqual(JWKS_DELAY_MS - TOLERANCE_MS);
    expect(line.durationMs as number).toBeLessThanOrEqual(elapsedMs);
    const after = await durations(m.admin, 'users', '2xx');
    expect(after.count - before.count).toBe(1);
    expect(after.sum - before.sum).toBeGreaterThanOrEqual((JWKS_DELAY_MS - TOLERANCE_MS) / 1000);
    expect(after.fast - before.fast).toBe(0);
  });

  it('HTTP/2 (h2c): the same request over HTTP/2 has the JWKS wait in durationMs and the histogram', async () => {
    const before = await durations(m.admin, 'users', '2xx');
    const token = await mint(key, { sub: 'u-2', aud: 'api' });
    const { head } = await h2Exchange(gw, {
      ':method': 'GET',
      ':path': '/h2/x',
      authorization: `Bearer ${token}`,
    });
    expect(head[':status']).toBe(200);
    expect(jwks.fetches.get('/h2')).toBe(1);
    const line = await accessLine(m, (l) => l.requestId === head['x-request-id']);
    expect(line).toMatchObject({ path: '/h2/x', upstream: 'users', status: 200, subject: 'u-2' });
    expect(line.durationMs as number).toBeGreaterThanOrEqual(JWKS_DELAY_MS - TOLERANCE_MS);
    const after = await durations(m.admin, 'users', '2xx');
    expect(after.count - before.count).toBe(1);
    expect(after.sum - before.sum).toBeGreaterThanOrEqual((JWKS_DELAY_MS - TOLERANCE_MS) / 1000);
    expect(after.fast - before.fast).toBe(0);
  });

  it('gRPC: a unary call through the gateway has the JWKS wait in durationMs and the histogram', async () => {
    const before = await durations(m.admin, 'echo', '2xx');
    const client = echoClient(`127.0.0.1:${m.daemon.addresses().gateway!.port}`);
    try {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${await mint(key, { sub: 'u-3', aud: 'api' })}`);
      const result = await unary(client, { message: 'hi' }, { metadata: md, deadlineMs: 5000 });
      expect(result.error).toBeUndefined();
      expect(result.reply?.message).toBe('hi');
    } finally {
      client.close();
    }
    expect(jwks.fetches.get('/grpc')).toBe(1);
    const line = await accessLine(m, (l) => l.path === '/meshlet.test.v1.Echo/Unary');
    expect(line).toMatchObject({ upstream: 'echo', status: 200, grpcStatus: 0, subject: 'u-3' });
    expect(line.durationMs as number).toBeGreaterThanOrEqual(JWKS_DELAY_MS - TOLERANCE_MS);
    const after = await durations(m.admin, 'echo', '2xx');
    expect(after.count - before.count).toBe(1);
    expect(after.sum - before.sum).toBeGreaterThanOrEqual((JWKS_DELAY_MS - TOLERANCE_MS) / 1000);
    expect(after.fast - before.fast).toBe(0);
  });

  it('a token refused after the JWKS wait (401) has the wait in its durationMs and histogram observation too', async () => {
    const before = await durations(m.admin, '', '4xx');
    const forged = await signingKey('k1'); // the JWKS's kid, another key: the signature does not verify
    const token = await mint(forged, { sub: 'u-4', aud: 'api' });
    const seen = upstream.requests.length;
    const res = await call(gw, '/refuse/x', { authorization: `Bearer ${token}` });
    expect(res.status).toBe(401);
    expect(jwks.fetches.get('/refuse')).toBe(1);
    expect(upstream.requests.length).toBe(seen);
    const line = await accessLine(m, (l) => l.requestId === res.headers['x-request-id']);
    expect(line).toMatchObject({ path: '/refuse/x', status: 401, attempts: 0, error: 'unauthorized' });
    expect(line.durationMs as number).toBeGreaterThanOrEqual(JWKS_DELAY_MS - TOLERANCE_MS);
    const after = await durations(m.admin, '', '4xx');
    expect(after.count - before.count).toBe(1);
    expect(after.sum - before.sum).toBeGreaterThanOrEqual((JWKS_DELAY_MS - TOLERANCE_MS) / 1000);
    expect(after.fast - before.fast).toBe(0);
  });
});
