// Gateway 405s carry `allow` (RFC 9110 §15.5.6): a method a matched path does not take, and CONNECT over h2c.
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl } from './fixtures.ts';

/** One h2c request; resolves with the response head. */
function h2Head(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
): Promise<http2.IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, headers[':method'] === 'CONNECT' ? { endStream: false } : {});
    stream.on('response', resolve);
    stream.on('error', reject);
    stream.resume();
  });
}

/** An `allow` value's methods, sorted. */
const methods = (v: string | string[] | undefined): string[] =>
  String(v ?? '')
    .split(',')
    .map((m) => m.trim())
    .filter((m) => m !== '')
    .sort();

describe('gateway 405 method_not_allowed carries allow', () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    upstream = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      gateway: {
        routes: [
          { match: { pathPrefix: '/app/', methods: ['GET', 'HEAD'] }, upstream: 'users' },
          { match: { pathPrefix: '/app/', methods: ['POST'] }, upstream: 'users' },
          { match: { pathPrefix: '/ro/', methods: ['GET'] }, upstream: 'users' },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  it('HTTP/1.1: a method no route on the path takes → 405 with every matching route’s methods in allow', async () => {
    const res = await call(gw, '/app/x', {}, 'DELETE');
    expect(res.status).toBe(405);
    expect(res.headers['x-meshlet-error']).toBe('method_not_allowed');
    expect(methods(res.headers.allow)).toEqual(['GET', 'HEAD', 'POST']);
    const ro = await call(gw, '/ro/x', {}, 'PUT');
    expect(ro.status).toBe(405);
    expect(methods(ro.headers.allow)).toEqual(['GET']);
    // An allowed method still goes through, without allow.
    const ok = await call(gw, '/app/x', {}, 'POST');
    expect(ok.status).toBe(200);
    expect(ok.headers.allow).toBeUndefined();
  });

  it('h2c: the same 405 with allow; CONNECT is 405 with the methods the gateway routes', async () => {
    const session = http2.connect(gw);
    try {
      const refused = await h2Head(session, { ':method': 'DELETE', ':path': '/app/x' });
      expect(refused[':status']).toBe(405);
      expect(methods(refused.allow)).toEqual(['GET', 'HEAD', 'POST']);
      const connect = await h2Head(session, { ':method': 'CONNECT', ':authority': 'users:443' });
      expect(connect[':status']).toBe(405);
      expect(connect['x-meshlet-error']).toBe('method_not_allowed');
      expect(methods(connect.allow)).toContain('GET');
      expect(methods(connect.allow)).not.toContain('CONNECT');
    } finally {
      session.close();
    }
  });
});
