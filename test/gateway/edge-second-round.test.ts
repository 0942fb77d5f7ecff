// Gateway defects found by a second round of hostile testing, each pinned by a test: fake preflights routed by the method they ask for, mesh identity headers from the internet, made-up x-forwarded-for keys, huge identity-service answers.
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientIp } from '../../src/gateway/rate-limits.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl, mint } from './fixtures.ts';

const SECRET = 'a-shared-secret-of-at-least-32-bytes!!';
const hsKey = new TextEncoder().encode(SECRET);

/** An identity service that accepts every token with a JSON answer of `bytes` bytes (padding in `pad`). */
async function hugeIdentityService(bytes: number): Promise<{ port: number; calls: number; server: Server }> {
  const state = { port: 0, calls: 0, server: null as unknown as Server };
  state.server = createServer((req, res) => {
    state.calls++;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ user_id: 'u-1', pad: 'x'.repeat(bytes) }));
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.port = (state.server.address() as AddressInfo).port;
  return state;
}

describe('gateway second-round hostile requests', () => {
  let upstream: TestUpstream;
  let identity: Awaited<ReturnType<typeof hugeIdentityService>>;
  let m: InProcessMeshlet;
  let gw: string;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream();
    identity = await hugeIdentityService(1024 * 1024);
    const dir = tempDir('meshlet-gw-');
    writeFileSync(join(dir, 'jwt.secret'), SECRET);
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: {
        endpoints: { web: [upstream.endpoint], 'identity-service': [`127.0.0.1:${identity.port}`] },
      },
      gateway: {
        trustedProxies: 1,
        auth: {
          jwt: { type: 'jwt', secretFile: join(dir, 'jwt.secret'), claims: { sub: 'x-user-id' } },
          // The same huge-answering service, reached directly and as an upstream.
          direct: {
            type: 'validate',
            url: `http://127.0.0.1:${identity.port}/auth/validate`,
            headers: { user_id: 'x-user-id' },
          },
          viaUpstream: {
            type: 'validate',
            url: 'http://identity-service/auth/validate',
            headers: { user_id: 'x-user-id' },
          },
        },
        routes: [
          // Reads are public, everything else needs a token.
          { match: { pathPrefix: '/api/', methods: ['GET', 'HEAD'] }, upstream: 'web' },
          { match: { pathPrefix: '/api/' }, upstream: 'web', auth: ['jwt'] },
          { match: { pathPrefix: '/lim/' }, upstream: 'web', rateLimit: { perSecond: 0.01, burst: 1 } },
          { match: { pathPrefix: '/direct/' }, upstream: 'web', auth: ['direct'] },
          { match: { pathPrefix: '/via/' }, upstream: 'web', auth: ['viaUpstream'] },
          { match: { pathPrefix: '/admin/' }, upstream: 'web', auth: ['jwt'] },
          { match: { pathPrefix: '/raw/' }, upstream: 'web', normalizePath: false },
          // A public catch-all last: what misses /admin/ lands here.
          { match: { pathPrefix: '/' }, upstream: 'web' },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
    port = m.daemon.addresses().gateway!.port;
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
    await new Promise((r) => identity.server.close(r));
  });

  it('a ";" path parameter is refused (400), so /admin;x/secret cannot skip /admin/\'s authentication through the catch-all', async () => {
    const before = upstream.requests.length;
    for (const path of ['/admin;x/secret', '/admin;jsessionid=1/secret', '/a;b', '/admin/x;y']) {
      const res = await call(gw, path);
      expect(res.status, path).toBe(400);
      expect(res.headers['x-meshlet-error']).toBe('bad_request');
      expect(JSON.parse(res.body).message).toContain('";" path parameter');
    }
    expect(upstream.requests.length).toBe(before);
    // In the query it is no path parameter; a route with normalizePath: false takes paths as they came.
    expect((await call(gw, '/public?a=1;b=2')).status).toBe(200);
    expect((await call(gw, '/raw/x;v=1')).status).toBe(200);
    expect(upstream.requests.at(-1)!.url).toBe('/raw/x;v=1');
  });

  it('an OPTIONS request with preflight headers is routed by its own method on a route without cors: not onto the public GET route', async () => {
    const before = upstream.requests.length;
    const fake = await call(
      gw,
      '/api/admin',
      { origin: 'https://evil.example', 'access-control-request-method': 'GET' },
      'OPTIONS',
    );
    // The route that takes OPTIONS authenticates: no token, 401; the GET-only public route never sees it.
    expect(fake.status).toBe(401);
    expect(fake.headers['www-authenticate']).toContain('Bearer');
    expect(upstream.requests.length).toBe(before);
    // With a token it goes through that route, as OPTIONS.
    const token = await mint(hsKey, { sub: 'alice' });
    const ok = await call(
      gw,
      '/api/admin',
      {
        origin: 'https://evil.example',
        'access-control-request-method': 'GET',
        authorization: `Bearer ${token}`,
      },
      'OPTIONS',
    );
    expect(ok.status).toBe(200);
    expect(upstream.requests.at(-1)!.method).toBe('OPTIONS');
    expect(upstream.requests.at(-1)!.headers['x-user-id']).toBe('alice');
  });

  it('x-meshlet-peer-identity and x-meshlet-peer-spiffe-id from a client (any case, repeated) never reach the upstream', async () => {
    const before = upstream.requests.length;
    const reply = parseReply(
      await rawRequest(
        port,
        'GET /api/x HTTP/1.1\r\nHost: gw\r\nX-MESHLET-PEER-IDENTITY: admin\r\nx-meshlet-peer-identity: root\r\n' +
          'X-Meshlet-Peer-Spiffe-Id: spiffe://mesh.test/svc/admin\r\nConnection: close\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
    const names = upstream.requests.at(-1)!.rawHeaders.filter((_, i) => i % 2 === 0);
    expect(names.map((n) => n.toLowerCase()).filter((n) => n.startsWith('x-meshlet-peer-'))).toEqual([]);
  });

  it('behind a trusted proxy, an x-forwarded-for entry that is no IP address counts as absent: made-up values share the peer bucket', async () => {
    // burst 1, refilled every 100 s: the second request of one key is refused.
    const from = (xff: string) => call(gw, '/lim/a', { 'x-forwarded-for': xff });
    expect((await from('garbage-1')).status).toBe(200);
    // Another made-up value is the same caller (the peer), not a fresh bucket.
    expect((await from(`garbage-${'x'.repeat(4000)}`)).status).toBe(429);
    expect((await from('203.0.113.9, ')).status).toBe(429);
    // A real address is its own caller; the forms a proxy may write are one address.
    expect((await from('2001:DB8::1')).status).toBe(200);
    expect((await from('[2001:db8::1]:443')).status).toBe(429);
    expect((await from('198.51.100.7:5000')).status).toBe(200);
    expect((await from('198.51.100.7')).status).toBe(429);
  });

  it('clientIp: the N-th entry from the right when it is an address, else the peer', () => {
    expect(clientIp('10.0.0.1', 'spoof, 203.0.113.5', 1)).toBe('203.0.113.5');
    expect(clientIp('10.0.0.1', '203.0.113.5, 10.0.0.2', 2)).toBe('203.0.113.5');
    expect(clientIp('10.0.0.1', ['203.0.113.5', '10.0.0.2'], 2)).toBe('203.0.113.5');
    // Fewer entries than proxies: the leftmost, written by a trusted proxy.
    expect(clientIp('10.0.0.1', '203.0.113.5', 3)).toBe('203.0.113.5');
    expect(clientIp('10.0.0.1', 'x'.repeat(10_000), 1)).toBe('10.0.0.1');
    expect(clientIp('10.0.0.1', '1.2.3.4, not-an-ip', 1)).toBe('10.0.0.1');
    expect(clientIp('10.0.0.1', '', 1)).toBe('10.0.0.1');
    expect(clientIp('10.0.0.1', '[FE80::1]', 1)).toBe('fe80::1');
    expect(clientIp('10.0.0.1', '203.0.113.5', 0)).toBe('10.0.0.1');
  });

  it('an identity-service answer over 64 KiB is a failed call (503 auth_unavailable), directly or through an upstream; nothing upstream', async () => {
    const before = upstream.requests.length;
    for (const path of ['/direct/a', '/via/a']) {
      const calls = identity.calls;
      const r = await call(gw, path, { authorization: 'Bearer some-token' });
      expect(r.status).toBe(503);
      expect(r.headers['x-meshlet-error']).toBe('auth_unavailable');
      expect(identity.calls).toBe(calls + 1);
      // Not cached: the next request asks again.
      expect((await call(gw, path, { authorization: 'Bearer some-token' })).status).toBe(503);
      expect(identity.calls).toBe(calls + 2);
    }
    expect(upstream.requests.length).toBe(before);
  });
});
