// Issue 12: plain HTTP/2 (h2c prior knowledge) requests through meshlet, to HTTP/1.1 and to HTTP/2 upstreams.
import { connect, createServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

/** One HTTP/2 request over a fresh h2c session; resolves with status, headers and body. */
function h2Request(
  origin: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const session = connect(origin);
    session.on('error', reject);
    const stream = session.request(headers, { endStream: body === undefined });
    let text = '';
    let head: Record<string, unknown> = {};
    stream.setEncoding('utf8');
    stream.on('response', (h) => {
      head = h;
    });
    stream.on('data', (d: string) => {
      text += d;
    });
    stream.on('end', () => {
      session.close();
      resolve({ status: Number(head[':status']), headers: head, body: text });
    });
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

describe('HTTP/2 requests through meshlet', () => {
  let h1: TestUpstream;
  let h2: Http2Server;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    h1 = await startUpstream();
    h2 = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            version: req.httpVersion,
            method: req.method,
            path: req.url,
            body,
            authority: req.authority,
          }),
        );
      });
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { web: [h1.endpoint], modern: [`127.0.0.1:${(h2.address() as AddressInfo).port}`] },
      },
      upstreams: { modern: { protocol: 'http2' } },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await h1.close();
    await new Promise<void>((r) => h2.close(() => r()));
  });

  it('an h2c request with a body reaches an HTTP/1.1 upstream with Host from :authority', async () => {
    const reply = await h2Request(
      mesh.outbound,
      { ':method': 'POST', ':path': '/v1/items?x=1', ':authority': 'web', 'content-type': 'text/plain' },
      'payload',
    );
    expect(reply.status).toBe(200);
    const seen = JSON.parse(reply.body) as { method: string; url: string; headers: Record<string, string> };
    expect(seen).toMatchObject({ method: 'POST', url: '/v1/items?x=1' });
    expect(seen.headers.host).toBe('web');
    expect(h1.requests.at(-1)?.headers['content-type']).toBe('text/plain');
    expect(reply.headers['x-meshlet-attempts']).toBe('1');
  });

  it('an h2c request reaches an HTTP/2 upstream over HTTP/2, body and all', async () => {
    const reply = await h2Request(
      mesh.outbound,
      { ':method': 'PUT', ':path': '/v2', ':authority': 'modern' },
      'h2 body',
    );
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toMatchObject({
      version: '2.0',
      method: 'PUT',
      path: '/v2',
      body: 'h2 body',
    });
  });

  it('an HTTP/2 request meshlet refuses gets the JSON error, and CONNECT gets 405', async () => {
    const missing = await h2Request(mesh.outbound, {
      ':method': 'GET',
      ':path': '/',
      ':authority': 'nobody',
    });
    expect(missing.status).toBe(404);
    expect(missing.headers['x-meshlet-error']).toBe('no_route');
    expect(JSON.parse(missing.body)).toMatchObject({ error: 'no_route' });
    const tunnel = await h2Request(mesh.outbound, { ':method': 'CONNECT', ':authority': 'web:443' });
    expect(tunnel.status).toBe(405);
    expect(tunnel.headers['x-meshlet-error']).toBe('method_not_allowed');
    expect(JSON.parse(tunnel.body)).toMatchObject({ error: 'method_not_allowed' });
  });

  it('request headers over 16 KiB over h2c get 400 bad_request as over HTTP/1.1 (gRPC: a status), and the upstream sees nothing', async () => {
    const before = h1.requests.length;
    const fits = await h2Request(mesh.outbound, {
      ':path': '/',
      ':authority': 'web',
      'x-big': 'a'.repeat(15_000),
    });
    expect(fits.status).toBe(200);
    expect(h1.requests.length).toBe(before + 1);
    // 20 KB: under node:http2's own 64 KiB, so only meshlet's limit (the HTTP/1.1 side's 16 KiB) refuses it.
    const big = await h2Request(mesh.outbound, {
      ':path': '/',
      ':authority': 'web',
      'x-big': 'a'.repeat(20_000),
    });
    expect(big.status).toBe(400);
    expect(big.headers['x-meshlet-error']).toBe('bad_request');
    expect(JSON.parse(big.body)).toMatchObject({
      error: 'bad_request',
      message: 'request headers too large',
    });
    const grpc = await h2Request(mesh.outbound, {
      ':method': 'POST',
      ':path': '/pkg.Svc/Call',
      ':authority': 'web',
      'content-type': 'application/grpc',
      'x-big': 'a'.repeat(20_000),
    });
    expect(grpc.status).toBe(200);
    expect(grpc.headers['grpc-status']).toBe('13');
    expect(grpc.headers['x-meshlet-error']).toBe('bad_request');
    expect(h1.requests.length).toBe(before + 1);
  });

  it('a Host header that names another authority than :authority gets 400 bad_request; the same one passes', async () => {
    const before = h1.requests.length;
    const other = await h2Request(mesh.outbound, { ':path': '/', ':authority': 'web', host: 'modern' });
    expect(other.status).toBe(400);
    expect(JSON.parse(other.body)).toMatchObject({
      error: 'bad_request',
      message: 'the Host header differs from :authority',
    });
    expect(h1.requests.length).toBe(before);
    const same = await h2Request(mesh.outbound, { ':path': '/', ':authority': 'web', host: 'WEB' });
    expect(same.status).toBe(200);
    expect(h1.requests.length).toBe(before + 1);
  });
});
