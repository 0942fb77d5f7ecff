// What crosses meshlet: header rewriting, chunked bodies, 100-continue, and aborts on either side.

import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('forwarding', () => {
  let app: TestUpstream;
  let hang: TestUpstream;
  let cut: TestUpstream;
  let hangClosed: Promise<void>;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    app = await startUpstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.writeHead(200, {
          'content-type': 'application/json',
          connection: 'keep-alive, x-secret-hop',
          'x-secret-hop': 'must not reach the client',
          'keep-alive': 'timeout=5',
          'set-cookie': ['a=1', 'b=2'],
        });
        res.end(JSON.stringify({ headers: req.headers, body: Buffer.concat(chunks).toString() }));
      });
    });
    let resolveClosed: () => void;
    hangClosed = new Promise((r) => {
      resolveClosed = r;
    });
    hang = await startUpstream((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk\n');
      req.socket.on('close', () => resolveClosed());
    });
    cut = await startUpstream((req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('only part of it');
      setTimeout(() => req.socket.destroy(), 50);
    });
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { app: [app.endpoint], hang: [hang.endpoint], cut: [cut.endpoint] },
      },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await Promise.all([app.close(), hang.close(), cut.close()]);
  });

  it('drops hop-by-hop headers, sets x-forwarded-*, adds x-request-id, passes trace headers', async () => {
    const port = mesh.daemon.addresses().outbound.port;
    const reply = parseReply(
      await rawRequest(
        port,
        'GET /trace HTTP/1.1\r\nHost: app\r\nConnection: close, x-drop-me\r\nKeep-Alive: timeout=5\r\n' +
          'Proxy-Authorization: Basic Zm9v\r\nTE: gzip\r\nUpgrade: websocket\r\nX-Drop-Me: 1\r\n' +
          'X-Forwarded-For: 10.1.2.3\r\n' +
          'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\ntracestate: congo=t61rcWkgMzE\r\n' +
          'b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\nx-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(200);
    const seen = JSON.parse(reply.body).headers as Record<string, string>;
    for (const hop of ['keep-alive', 'proxy-authorization', 'te', 'upgrade', 'x-drop-me'])
      expect(seen[hop]).toBeUndefined();
    // `TE: trailers` alone passes (gRPC needs it; Envoy keeps it too).
    const withTrailers = parseReply(
      await rawRequest(port, 'GET /trace HTTP/1.1\r\nHost: app\r\nTE: trailers\r\nConnection: close\r\n\r\n'),
    );
    expect((JSON.parse(withTrailers.body).headers as Record<string, string>).te).toBe('trailers');
    expect(seen.connection).not.toMatch(/x-drop-me/);
    expect(seen['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen['x-forwarded-for']).toBe('10.1.2.3, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen.traceparent).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    expect(seen.tracestate).toBe('congo=t61rcWkgMzE');
    expect(seen.b3).toBe('80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1');
    expect(seen['x-b3-traceid']).toBe('80f198ee56343ba864fe8b2a57d3eff7');
    // The response: the id echoed, the upstream's hop-by-hop headers gone, multi-value headers kept.
    expect(reply.headers['x-request-id']).toBe(seen['x-request-id']);
    expect(reply.headers['x-secret-hop']).toBeUndefined();
    expect(reply.headers['keep-alive']).toBeUndefined();
  });

  it('keeps an incoming x-request-id and echoes it; multi-value response headers survive', async () => {
    const res = await request(`${mesh.outbound}/`, { headers: { host: 'app', 'x-request-id': 'req-123' } });
    const body = (await res.body.json()) as { headers: Record<string, string> };
    expect(body.headers['x-request-id']).toBe('req-123');
    expect(res.headers['x-request-id']).toBe('req-123');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
  });

  it('streams a chunked request body', async () => {
    const port = mesh.daemon.addresses().outbound.port;
    const reply = parseReply(
      await rawRequest(
        port,
        'POST /c HTTP/1.1\r\nHost: app\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n' +
          '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(200);
    const seen = JSON.parse(reply.body) as { body: string; headers: Record<string, string> };
    expect(seen.body).toBe('hello world');
    // Re-framed upstream: chunked, or a content-length when the whole body had already arrived.
    expect(seen.headers['transfer-encoding'] ?? seen.headers['content-length']).toMatch(/^(chunked|11)$/);
  });

  it('answers Expect: 100-continue and forwards the body', async () => {
    const port = mesh.daemon.addresses().outbound.port;
    const text = await rawRequest(
      port,
      'PUT /e HTTP/1.1\r\nHost: app\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 14\r\n\r\ncontinued body',
    );
    expect(text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')).toBe(true);
    const reply = parseReply(text.slice('HTTP/1.1 100 Continue\r\n\r\n'.length));
    expect(reply.status).toBe(200);
    const seen = JSON.parse(reply.body) as { body: string; headers: Record<string, string> };
    expect(seen.body).toBe('continued body');
    expect(seen.headers.expect).toBeUndefined();
  });

  it('a client abort cancels the upstream request', async () => {
    const controller = new AbortController();
    const res = await request(`${mesh.outbound}/h`, { headers: { host: 'hang' }, signal: controller.signal });
    expect(res.statusCode).toBe(200);
    controller.abort();
    await expect(
      Promise.race([
        hangClosed,
        new Promise((_, r) => setTimeout(() => r(new Error('upstream not closed')), 3000)),
      ]),
    ).resolves.toBeUndefined();
  });

  it('an upstream abort ends the client response without a hang', async () => {
    const res = await request(`${mesh.outbound}/cut`, { headers: { host: 'cut' } });
    expect(res.statusCode).toBe(200);
    await expect(res.body.text()).rejects.toThrow();
  });

  it('request headers over 16 KiB → 400 bad_request, and the upstream sees nothing', async () => {
    const port = mesh.daemon.addresses().outbound.port;
    const before = app.requests.length;
    const reply = parseReply(
      await rawRequest(port, `GET / HTTP/1.1\r\nHost: app\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-meshlet-error']).toBe('bad_request');
    expect(JSON.parse(reply.body)).toEqual({
      error: 'bad_request',
      message: 'request headers too large',
      upstream: null,
    });
    expect(app.requests.length).toBe(before);
  });

  it('garbage instead of HTTP → 400 bad_request', async () => {
    const port = mesh.daemon.addresses().outbound.port;
    const reply = parseReply(await rawRequest(port, 'HELLO?\r\n\r\n'));
    expect(reply.status).toBe(400);
    expect(reply.headers['x-meshlet-error']).toBe('bad_request');
  });
});
