// An endpoint's pool is created on its first use, never for an idle endpoint nor for a handle that left.
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { upstreamSpec } from '../config/schema.ts';
import { Metrics } from '../telemetry/metrics.ts';
import { type Endpoint, makeEndpoint } from './endpoint.ts';
import { type EndpointPool, plainPoolFactory, type PoolFactory, Upstream } from './upstream.ts';
import { resolveUpstreamSettings } from './upstream-settings.ts';
import { requestThrough } from './undici-request.ts';
import type { Dispatcher } from 'undici';

/** An upstream whose pool factory records every pool it makes (the real plain pools). */
function countingUpstream(spec: unknown = {}): { upstream: Upstream; made: EndpointPool[] } {
  const made: EndpointPool[] = [];
  const factory: PoolFactory = (endpoint, settings, name) => {
    const pool = plainPoolFactory(endpoint, settings, name);
    made.push(pool);
    return pool;
  };
  const settings = resolveUpstreamSettings(upstreamSpec.parse(spec), 'users');
  return { upstream: new Upstream('users', settings, new Metrics(), factory), made };
}

/** A real HTTP server on 127.0.0.1 answering 200: the requests it saw and the connections open to it. */
interface TestServer {
  readonly port: number;
  readonly requests: string[];
  openConnections(): number;
  close(): Promise<void>;
}

async function startUpstream(): Promise<TestServer> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    openConnections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** `n` endpoints on 127.0.0.2 ports nothing listens on (never dialled here). */
function idleEndpoints(n: number): Endpoint[] {
  return Array.from({ length: n }, (_, i) => makeEndpoint('127.0.0.2', 30_000 + i));
}

async function get(pool: EndpointPool, port: number): Promise<number> {
  const res = await requestThrough(pool as Dispatcher, {
    method: 'GET',
    path: '/',
    headers: { host: `127.0.0.1:${port}` },
    headersTimeout: 2000,
    bodyTimeout: 2000,
    signal: AbortSignal.timeout(2000),
  });
  await res.body.dump();
  return res.statusCode;
}

describe('Upstream pools on first use', () => {
  const upstreams: Upstream[] = [];
  const servers: TestServer[] = [];
  afterEach(async () => {
    for (const u of upstreams.splice(0)) await u.close();
    for (const s of servers.splice(0)) await s.close();
  });

  it('endpoints that arrive and carry no traffic hold no pool; the first request to one creates exactly one', async () => {
    const server = await startUpstream();
    servers.push(server);
    const { upstream, made } = countingUpstream();
    upstreams.push(upstream);
    upstream.setEndpoints([...idleEndpoints(200), makeEndpoint('127.0.0.1', server.port)]);
    expect(upstream.endpoints).toHaveLength(201);
    expect(upstream.poolCount).toBe(0);
    expect(made).toHaveLength(0);

    const used = upstream.endpoints[200]!;
    const pool = upstream.poolOf(used)!;
    expect(await get(pool, server.port)).toBe(200);
    expect(await get(upstream.poolOf(used)!, server.port)).toBe(200);
    expect(upstream.poolOf(used)).toBe(pool);
    expect(upstream.poolCount).toBe(1);
    expect(made).toEqual([pool]);
    expect(server.requests).toHaveLength(2);

    // A snapshot that keeps every endpoint keeps the pool and makes none.
    upstream.setEndpoints([...idleEndpoints(200), makeEndpoint('127.0.0.1', server.port)]);
    expect(upstream.poolOf(upstream.endpoints[200]!)).toBe(pool);
    expect(made).toHaveLength(1);
  });

  it('a handle that left the upstream never gets a pool afterwards; a used one has its pool closed', async () => {
    const server = await startUpstream();
    servers.push(server);
    const { upstream, made } = countingUpstream();
    upstreams.push(upstream);
    upstream.setEndpoints([makeEndpoint('127.0.0.1', server.port), ...idleEndpoints(3)]);
    const [used, idle] = upstream.endpoints;
    const pool = upstream.poolOf(used!)!;
    expect(await get(pool, server.port)).toBe(200);
    expect(server.openConnections()).toBe(1);

    upstream.setEndpoints(idleEndpoints(3).slice(1));
    expect(upstream.poolOf(idle!)).toBeUndefined();
    expect(upstream.poolOf(used!)).toBeUndefined();
    expect(upstream.poolCount).toBe(0);
    expect(made).toEqual([pool]);
    // The departed endpoint's pool closed: its keep-alive connection ends.
    const deadline = Date.now() + 2000;
    while (server.openConnections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(server.openConnections()).toBe(0);
    expect((pool as Dispatcher & { closed: boolean }).closed).toBe(true);

    // Closed, a live handle gets no pool either.
    const live = upstream.endpoints[0]!;
    await upstream.close();
    expect(upstream.poolOf(live)).toBeUndefined();
    expect(made).toHaveLength(1);
  });

  it('a reloaded connect timeout closes the pools that exist; the next use creates one with the new settings', async () => {
    const server = await startUpstream();
    servers.push(server);
    const { upstream, made } = countingUpstream({ timeouts: { connect: '1s' } });
    upstreams.push(upstream);
    upstream.setEndpoints([makeEndpoint('127.0.0.1', server.port), ...idleEndpoints(5)]);
    const handle = upstream.endpoints[0]!;
    const before = upstream.poolOf(handle)!;
    upstream.updateSettings(
      resolveUpstreamSettings(upstreamSpec.parse({ timeouts: { connect: '2s' } }), 'users'),
    );
    expect((before as Dispatcher & { closed: boolean }).closed).toBe(true);
    expect(upstream.poolCount).toBe(0);
    const after = upstream.poolOf(handle)!;
    expect(after).not.toBe(before);
    expect(await get(after, server.port)).toBe(200);
    expect(made).toEqual([before, after]);
    expect(upstream.poolCount).toBe(1);
  });

  it('an address undici refuses as an origin gives no pool (the attempt finds no usable endpoint), not a throw', () => {
    const { upstream, made } = countingUpstream();
    upstreams.push(upstream);
    upstream.setEndpoints([makeEndpoint('bad host', 80)]);
    expect(upstream.poolOf(upstream.endpoints[0]!)).toBeUndefined();
    expect(upstream.poolCount).toBe(0);
    expect(made).toHaveLength(0);
  });
});
