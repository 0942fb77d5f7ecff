// A request meshlet refuses before any endpoint (no route, a malformed target, the gateway's 401/403/429, a malformed head) gets an access line with every field DESIGN's log contract names.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import { hashApiKey } from '../../src/gateway/api-key-authenticator.ts';
import { call, gatewayUrl } from '../gateway/fixtures.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { scrapeMetrics, sampleValue } from '../helpers/metrics.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { accessLine, DURATION, UUID } from './access-lines.ts';

describe('access lines of requests meshlet refuses before any endpoint', () => {
  let up: TestUpstream;
  let m: InProcessMeshlet;
  let gw: string;
  let outboundPort: number;

  beforeAll(async () => {
    up = await startUpstream();
    const keysFile = join(tempDir('meshlet-refused-lines-'), 'api-keys.yaml');
    writeFileSync(
      keysFile,
      stringify({
        keys: [
          { name: 'acme-app', sha256: hashApiKey('key-acme'), tenant: 'acme' },
          { name: 'globex-app', sha256: hashApiKey('key-globex'), tenant: 'globex' },
        ],
      }),
    );
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { type: 'static', endpoints: { orders: [up.endpoint] } },
      accessLog: { enabled: false, sampleRate: 0 },
      gateway: {
        auth: { keys: { type: 'apiKey', file: keysFile } },
        routes: [
          {
            match: { pathPrefix: '/orders/' },
            upstream: 'orders',
            auth: ['keys'],
            allow: { tenants: ['acme'] },
          },
          {
            match: { pathPrefix: '/limited/' },
            upstream: 'orders',
            auth: ['keys'],
            rateLimit: { perSecond: 0.001, burst: 1, by: 'key' },
          },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
    outboundPort = Number(new URL(m.outbound).port);
  });
  afterAll(async () => {
    await m.close();
    await up.close();
  });

  it('outbound no_route without an x-request-id: a generated one, on the line and echoed; path, upstream "", duration', async () => {
    const res = await request(`${m.outbound}/nr/a?access_token=SECRET`, { headers: { host: 'nowhere' } });
    await res.body.dump();
    expect(res.statusCode).toBe(404);
    const id = res.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.requestId === id)).toEqual({
      requestId: id,
      direction: 'outbound',
      method: 'GET',
      path: '/nr/a?access_token=[redacted]',
      upstream: '',
      endpoint: null,
      status: 404,
      attempts: 0,
      durationMs: DURATION,
      error: 'no_route',
    });
  });

  it('outbound no_route with the client’s x-request-id: kept on the line and echoed on the refusal', async () => {
    const res = await request(`${m.outbound}/nr/b`, {
      method: 'POST',
      headers: { host: 'nowhere', 'x-request-id': 'client-id-1' },
      body: 'x',
    });
    await res.body.dump();
    expect(res.statusCode).toBe(404);
    expect(res.headers['x-request-id']).toBe('client-id-1');
    expect(await accessLine(m, (l) => l.requestId === 'client-id-1')).toEqual({
      requestId: 'client-id-1',
      direction: 'outbound',
      method: 'POST',
      path: '/nr/b',
      upstream: '',
      endpoint: null,
      status: 404,
      attempts: 0,
      durationMs: DURATION,
      error: 'no_route',
    });
  });

  it('a gRPC call with no route: its line carries the grpcStatus its answer does, as a forwarded call’s', async () => {
    const res = await request(`${m.outbound}/pkg.Svc/Method`, {
      method: 'POST',
      headers: { host: 'nowhere', 'content-type': 'application/grpc', 'x-request-id': 'grpc-id-1' },
      body: Buffer.alloc(5),
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    expect(res.headers['grpc-status']).toBe('12');
    expect(res.headers['x-request-id']).toBe('grpc-id-1');
    expect(await accessLine(m, (l) => l.requestId === 'grpc-id-1')).toEqual({
      requestId: 'grpc-id-1',
      direction: 'outbound',
      method: 'POST',
      path: '/pkg.Svc/Method',
      upstream: '',
      endpoint: null,
      status: 404,
      grpcStatus: 12,
      attempts: 0,
      durationMs: DURATION,
      error: 'no_route',
    });
  });

  it('a malformed request target: 400 with the client’s id echoed; the line names the target as sent', async () => {
    const reply = parseReply(
      await rawRequest(
        outboundPort,
        'GET http:///nothing HTTP/1.1\r\nHost: x\r\nX-Request-Id: raw-target-1\r\nConnection: close\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-request-id']).toBe('raw-target-1');
    expect(await accessLine(m, (l) => l.requestId === 'raw-target-1')).toEqual({
      requestId: 'raw-target-1',
      direction: 'outbound',
      method: 'GET',
      path: 'http:///nothing',
      upstream: '',
      endpoint: null,
      status: 400,
      attempts: 0,
      durationMs: DURATION,
      error: 'bad_request',
    });
  });

  it('gateway 401 (no credentials): the route’s upstream and path; an outside client’s x-request-id is replaced, as when forwarded', async () => {
    const res = await call(gw, '/orders/1', { 'x-request-id': 'chosen-by-client' });
    expect(res.status).toBe(401);
    const id = res.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.requestId === id)).toEqual({
      requestId: id,
      direction: 'outbound',
      method: 'GET',
      path: '/orders/1',
      upstream: 'orders',
      endpoint: null,
      status: 401,
      attempts: 0,
      durationMs: DURATION,
      error: 'unauthorized',
    });
    expect(m.logs.some((l) => l.requestId === 'chosen-by-client')).toBe(false);
  });

  it('gateway 403 after authentication: the caller’s fields (authenticator, tenant, key name) are on the line', async () => {
    const res = await call(gw, '/orders/2', { 'x-api-key': 'key-globex' });
    expect(res.status).toBe(403);
    const id = res.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.requestId === id)).toEqual({
      requestId: id,
      direction: 'outbound',
      method: 'GET',
      path: '/orders/2',
      upstream: 'orders',
      endpoint: null,
      status: 403,
      attempts: 0,
      durationMs: DURATION,
      error: 'forbidden',
      auth: 'keys',
      tenant: 'globex',
      keyName: 'globex-app',
    });
  });

  it('gateway 429 (the route’s rate limit): upstream, path and caller, like the line of the request it let through', async () => {
    const ok = await call(gw, '/limited/a', { 'x-api-key': 'key-acme' });
    expect(ok.status).toBe(200);
    const res = await call(gw, '/limited/a', { 'x-api-key': 'key-acme' });
    expect(res.status).toBe(429);
    const id = res.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.requestId === id)).toEqual({
      requestId: id,
      direction: 'outbound',
      method: 'GET',
      path: '/limited/a',
      upstream: 'orders',
      endpoint: null,
      status: 429,
      attempts: 0,
      durationMs: DURATION,
      error: 'rate_limited',
      auth: 'keys',
      tenant: 'acme',
      keyName: 'acme-app',
    });
  });

  it('a malformed head (the listener answers before any request exists): upstream "", no endpoint, 0 attempts; no id, path or duration', async () => {
    const before = m.logs.length;
    const reply = parseReply(
      await rawRequest(outboundPort, 'GET /a HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n'),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-request-id']).toBeUndefined();
    const line = await accessLine(
      m,
      (l) => m.logs.indexOf(l) >= before && l.status === 400 && l.method === undefined,
    );
    expect(line).toEqual({
      direction: 'outbound',
      upstream: '',
      endpoint: null,
      status: 400,
      attempts: 0,
      error: 'bad_request',
    });
  });

  it('the request-duration histogram times a refusal as its line does (not as 0 s)', async () => {
    const series = { direction: 'outbound', upstream: '', status_class: '4xx' };
    const before = await scrapeMetrics(m.admin);
    for (let i = 0; i < 5; i++) {
      const res = await request(`${m.outbound}/nr/timed-${i}`, { headers: { host: 'nowhere' } });
      await res.body.dump();
      expect(res.statusCode).toBe(404);
    }
    const after = await scrapeMetrics(m.admin);
    const count = (t: string) => sampleValue(t, 'meshlet_request_duration_seconds_count', series);
    const sum = (t: string) => sampleValue(t, 'meshlet_request_duration_seconds_sum', series);
    expect(count(after) - count(before)).toBe(5);
    // Each refusal took some microseconds between the handler and its answer; 0 s were recorded before.
    const added = sum(after) - sum(before);
    expect(added).toBeGreaterThan(0);
    expect(added).toBeLessThan(5);
  });
});
