// Gateway defects found by hostile testing, each pinned by a test: CORS wildcards with credentials, repeated Authorization headers, huge JWKS documents, an upstream's own Vary and CORS headers, non-Latin-1 claims.
import { writeFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.ts';
import { ConfigError } from '../../src/errors/config-error.ts';
import { CorsPolicy } from '../../src/gateway/cors.ts';
import { type InProcessMeshlet, runCli, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  call,
  gatewayUrl,
  type JwksServer,
  mint,
  type SigningKey,
  signingKey,
  startJwksServer,
  unsignedToken,
} from './fixtures.ts';

const SECRET = 'a-shared-secret-of-at-least-32-bytes!!';
const hsKey = new TextEncoder().encode(SECRET);

const wildcardWithCredentials = {
  registry: { endpoints: { users: ['127.0.0.1:9'] } },
  gateway: {
    routes: [
      { match: { pathPrefix: '/me' }, upstream: 'users', cors: { origins: ['*'], credentials: true } },
    ],
  },
};

describe('gateway CORS: origins ["*"] with credentials', () => {
  it('is refused at config validation, naming the key path; `meshlet config check` exits 2', async () => {
    let error: unknown;
    try {
      validateConfig(wildcardWithCredentials);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).keyPath).toBe('gateway.routes[0].cors.credentials');
    expect((error as ConfigError).message).toMatch(/needs exact origins/);

    const r = await runCli(['config', 'check', writeConfig(wildcardWithCredentials)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('gateway.routes[0].cors.credentials');
  });

  it('a wildcard policy that got past the schema never echoes an origin with credentials', () => {
    const policy = new CorsPolicy(
      { origins: ['*'], credentials: true, exposeHeaders: [], maxAge: 600 },
      undefined,
    );
    for (const origin of ['https://evil.example', 'null']) {
      const actual = policy.response(origin);
      expect(actual).not.toContain('access-control-allow-credentials');
      expect(actual[actual.indexOf('access-control-allow-origin') + 1]).toBe('*');
      const pre = policy.preflight(origin, 'content-type');
      expect(pre).not.toContain('access-control-allow-credentials');
      expect(pre[pre.indexOf('access-control-allow-origin') + 1]).toBe('*');
    }
  });
});

describe('gateway requests from hostile clients', () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream();
    const dir = tempDir('meshlet-gw-');
    writeFileSync(join(dir, 'jwt.secret'), SECRET);
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      gateway: {
        auth: {
          jwt: {
            type: 'jwt',
            secretFile: join(dir, 'jwt.secret'),
            claims: { sub: 'x-user-id', name: 'x-user-name' },
          },
        },
        routes: [
          { match: { pathPrefix: '/jwt/' }, upstream: 'users', auth: ['jwt'] },
          { match: { pathPrefix: '/public/' }, upstream: 'users' },
        ],
      },
    });
    port = m.daemon.addresses().gateway!.port;
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  const metrics = async () => (await fetch(`${m.admin}/metrics`)).text();

  it('two Authorization headers → 400 bad_request before authentication: nothing upstream, nothing counted for the route', async () => {
    const good = await mint(hsKey, { sub: 'alice' });
    const forged = unsignedToken({ sub: 'admin', roles: ['admin'] });
    const before = upstream.requests.length;
    for (const path of ['/jwt/x', '/public/x']) {
      const reply = parseReply(
        await rawRequest(
          port,
          `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${good}\r\n` +
            `authorization: Bearer ${forged}\r\nConnection: close\r\n\r\n`,
        ),
      );
      expect(reply.status).toBe(400);
      expect(JSON.parse(reply.body).error).toBe('bad_request');
    }
    expect(upstream.requests.length).toBe(before);
    const text = await metrics();
    expect(text).toMatch(/meshlet_gateway_unrouted_total\{reason="bad_request"\} 2/);
    expect(text).not.toMatch(/meshlet_gateway_requests_total\{route="users#0"/);
    expect(text).not.toMatch(/meshlet_requests_total\{[^}]*upstream="users"/);

    // One Authorization header still goes through.
    const one = await rawRequest(
      port,
      `GET /jwt/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${good}\r\nConnection: close\r\n\r\n`,
    );
    expect(parseReply(one).status).toBe(200);
    const after = await metrics();
    expect(after).toMatch(/meshlet_gateway_requests_total\{route="users#0",auth="ok",tenant=""\} 1/);
    expect(after).toMatch(/meshlet_requests_total\{[^}]*upstream="users"/);
  });

  it('a claim outside Latin-1 reaches the upstream percent-encoded (UTF-8), not a 400; plain ASCII is sent as it is', async () => {
    const gw = gatewayUrl(m.daemon);
    const names = ['山田太郎', 'Zoë 🙂', 'Jürgen', '100% real', ' padded ', 'a\r\nx-admin: 1'];
    for (const name of names) {
      const res = await call(gw, '/jwt/me', {
        authorization: `Bearer ${await mint(hsKey, { sub: 'u', name })}`,
      });
      expect(res.status).toBe(200);
      const headers = JSON.parse(res.body).headers as Record<string, string>;
      expect(headers['x-user-name']).toMatch(/^[\x21-\x7e]+$/);
      expect(decodeURIComponent(headers['x-user-name']!)).toBe(name);
      expect(headers['x-admin']).toBeUndefined();
    }
    const plain = await call(gw, '/jwt/me', {
      authorization: `Bearer ${await mint(hsKey, { sub: 'u', name: 'Jane Doe' })}`,
    });
    expect(JSON.parse(plain.body).headers['x-user-name']).toBe('Jane Doe');
  });
});

describe('gateway JWKS documents past the size cap', () => {
  let upstream: TestUpstream;
  let k1: SigningKey;
  let k2: SigningKey;
  let hugeFromStart: JwksServer;
  let turnsHuge: JwksServer;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    k1 = await signingKey('k1');
    k2 = await signingKey('k2');
    hugeFromStart = await startJwksServer([k1.jwk]);
    hugeFromStart.huge = true;
    turnsHuge = await startJwksServer([k1.jwk]);
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      gateway: {
        auth: {
          huge: { type: 'jwt', jwksUrl: hugeFromStart.url, jwksTimeout: '5s' },
          later: { type: 'jwt', jwksUrl: turnsHuge.url, jwksTimeout: '5s', jwksMinRefreshInterval: '200ms' },
        },
        routes: [
          { match: { pathPrefix: '/huge/' }, upstream: 'users', auth: ['huge'] },
          { match: { pathPrefix: '/later/' }, upstream: 'users', auth: ['later'] },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
    await hugeFromStart.close();
    await turnsHuge.close();
  });

  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  it('a JWKS document over 1 MiB is a failed fetch: 503 auth_unavailable, reading stopped early, nothing upstream', async () => {
    const before = upstream.requests.length;
    const res = await call(gw, '/huge/x', bearer(await mint(k1, { sub: 'u' })));
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body).error).toBe('auth_unavailable');
    expect(upstream.requests.length).toBe(before);
    await new Promise((r) => setTimeout(r, 50));
    // The gateway hung up long before the 32 MiB were written.
    expect(hugeFromStart.writtenAtClose).toHaveLength(1);
    expect(hugeFromStart.writtenAtClose[0]!).toBeLessThan(8 * 1024 * 1024);
    const metrics = await (await fetch(`${m.admin}/metrics`)).text();
    expect(metrics).toMatch(/meshlet_gateway_jwks_fetches_total\{authenticator="huge",result="failed"\} 1/);
  });

  it('a refresh that brings a document over the cap keeps the old keys', async () => {
    expect((await call(gw, '/later/x', bearer(await mint(k1, { sub: 'u' })))).status).toBe(200);
    turnsHuge.keys = [k1.jwk, k2.jwk];
    turnsHuge.huge = true;
    await new Promise((r) => setTimeout(r, 250)); // past jwksMinRefreshInterval
    const fetches = turnsHuge.fetches;
    // k2 is in the oversized document only: the refresh fails and k2 stays unknown.
    expect((await call(gw, '/later/x', bearer(await mint(k2, { sub: 'u' })))).status).toBe(401);
    expect(turnsHuge.fetches).toBe(fetches + 1);
    // Another subject: a new token, so its signature is checked with the kept k1 (not the verified cache).
    expect((await call(gw, '/later/x', bearer(await mint(k1, { sub: 'u2' })))).status).toBe(200);
  });
});

describe("gateway CORS beside the upstream's own Vary and CORS headers", () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    // Compression middleware's Vary, and a CORS middleware of the app's own that allows everyone.
    upstream = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, {
        vary: req.url === '/cors/has-origin' ? 'Accept-Encoding, Origin' : 'Accept-Encoding',
        'access-control-allow-origin': '*',
        'access-control-expose-headers': 'x-internal',
        'cache-control': 'public, max-age=60',
      });
      res.end('ok');
    });
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      gateway: {
        routes: [
          {
            match: { pathPrefix: '/cors/' },
            upstream: 'users',
            cors: { origins: ['https://a.example', 'https://b.example'], credentials: true },
          },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  const vary = (v: string | string[] | undefined) =>
    String(v)
      .split(',')
      .map((t) => t.trim().toLowerCase());

  it("keeps the upstream's Vary tokens and adds origin once; the gateway's CORS headers win (HTTP/1.1)", async () => {
    for (const origin of ['https://a.example', 'https://b.example']) {
      const res = await call(gw, '/cors/x', { origin });
      expect(res.status).toBe(200);
      expect(vary(res.headers.vary)).toEqual(['accept-encoding', 'origin']);
      expect(res.headers['access-control-allow-origin']).toBe(origin);
      expect(res.headers['access-control-allow-credentials']).toBe('true');
      expect(res.headers['access-control-expose-headers']).toBeUndefined();
    }
    const already = await call(gw, '/cors/has-origin', { origin: 'https://a.example' });
    expect(vary(already.headers.vary)).toEqual(['accept-encoding', 'origin']);
    // Another origin: none of the upstream's CORS headers, and still vary: origin.
    const other = await call(gw, '/cors/x', { origin: 'https://evil.example' });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    expect(vary(other.headers.vary)).toEqual(['accept-encoding', 'origin']);
  });

  it('the same over h2c', async () => {
    const session = http2.connect(gw);
    try {
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const stream = session.request({ ':path': '/cors/x', origin: 'https://b.example' });
        stream.on('response', resolve);
        stream.on('error', reject);
        stream.resume();
      });
      expect(headers[':status']).toBe(200);
      expect(vary(headers.vary)).toEqual(['accept-encoding', 'origin']);
      expect(headers['access-control-allow-origin']).toBe('https://b.example');
      expect(headers['access-control-allow-credentials']).toBe('true');
    } finally {
      session.close();
    }
  });
});
