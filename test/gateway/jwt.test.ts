// Gateway JWT authentication against a real JWKS server: valid, expired, wrong aud, bad signature, alg none, unknown kid, rotation, kid floods.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  call,
  gatewayUrl,
  type JwksServer,
  many,
  mint,
  type SigningKey,
  signingKey,
  startJwksServer,
  unsignedToken,
} from './fixtures.ts';

const SECRET = 'a-shared-secret-of-at-least-32-bytes!!';
const hsKey = new TextEncoder().encode(SECRET);

describe('gateway jwt', () => {
  let upstream: TestUpstream;
  let jwks: JwksServer;
  let k1: SigningKey;
  let k2: SigningKey;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    k1 = await signingKey('k1');
    k2 = await signingKey('k2');
    jwks = await startJwksServer([k1.jwk]);
    const dir = tempDir('meshlet-gw-');
    writeFileSync(join(dir, 'jwt.secret'), `${SECRET}\n`);
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      gateway: {
        auth: {
          'users-jwt': {
            type: 'jwt',
            secretFile: join(dir, 'jwt.secret'),
            issuer: 'identity',
            audience: 'api',
            claims: { sub: 'x-user-id', tenant: 'x-tenant-id', roles: 'x-user-roles' },
          },
          'partners-jwt': {
            type: 'jwt',
            jwksUrl: jwks.url,
            audience: 'api',
            claims: { sub: 'x-user-id' },
            jwksMinRefreshInterval: '1s',
          },
        },
        routes: [
          { match: { pathPrefix: '/hs/' }, upstream: 'users', stripPrefix: true, auth: ['users-jwt'] },
          { match: { pathPrefix: '/rs/' }, upstream: 'users', stripPrefix: true, auth: ['partners-jwt'] },
          {
            match: { pathPrefix: '/admin/', methods: ['GET'] },
            upstream: 'users',
            auth: ['users-jwt'],
            allow: { roles: ['admin'] },
          },
          { match: { pathPrefix: '/public/' }, upstream: 'users' },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
    await jwks.close();
  });

  const seen = () => upstream.requests.length;
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  it('HS256: a valid token reaches the upstream with the mapped claim headers; a forged x-user-id is replaced', async () => {
    const token = await mint(hsKey, {
      sub: 'u-42',
      iss: 'identity',
      aud: 'api',
      tenant: 'acme',
      roles: ['user', 'ops'],
    });
    const res = await call(gw, '/hs/v1/me', {
      ...bearer(token),
      'x-user-id': 'forged',
      'X-Tenant-Id': 'evil',
    });
    expect(res.status).toBe(200);
    const h = JSON.parse(res.body).headers;
    expect(JSON.parse(res.body).url).toBe('/v1/me');
    expect(h['x-user-id']).toBe('u-42');
    expect(h['x-tenant-id']).toBe('acme');
    expect(h['x-user-roles']).toBe('user,ops');
    expect(h.authorization).toBe(`Bearer ${token}`);
  });

  it('RS256 through the JWKS: valid → 200 with x-user-id', async () => {
    const res = await call(gw, '/rs/x', bearer(await mint(k1, { sub: 'partner-1', aud: 'api' })));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).headers['x-user-id']).toBe('partner-1');
  });

  it('expired, wrong aud, wrong signature, alg none, unknown kid, HS256 on the JWKS route → 401; the upstream is never contacted', async () => {
    const other = await signingKey('k1');
    const cases: [string, string][] = [
      [
        '/hs/a',
        await mint(hsKey, {
          sub: 'u',
          iss: 'identity',
          aud: 'api',
          exp: Math.floor(Date.now() / 1000) - 120,
        }),
      ],
      ['/hs/a', await mint(hsKey, { sub: 'u', iss: 'identity', aud: 'other' })],
      [
        '/hs/a',
        await mint(new TextEncoder().encode('another-secret-another-secret-123'), {
          sub: 'u',
          iss: 'identity',
          aud: 'api',
        }),
      ],
      ['/hs/a', unsignedToken({ sub: 'u', iss: 'identity', aud: 'api' })],
      ['/rs/a', await mint(other, { sub: 'u', aud: 'api' })],
      ['/rs/a', await mint(await signingKey('nope'), { sub: 'u', aud: 'api' })],
      ['/rs/a', unsignedToken({ sub: 'u', aud: 'api' })],
      ['/rs/a', await mint(hsKey, { sub: 'u', aud: 'api' }, { kid: 'k1' })],
    ];
    const before = seen();
    for (const [path, token] of cases) {
      const res = await call(gw, path, bearer(token));
      expect(res.status, `${path} ${token.slice(0, 30)}`).toBe(401);
      expect(res.headers['x-meshlet-error']).toBe('unauthorized');
      expect(String(res.headers['www-authenticate'])).toContain('error="invalid_token"');
      expect(JSON.parse(res.body).error).toBe('unauthorized');
    }
    const missing = await call(gw, '/hs/a');
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="meshlet"');
    expect(seen()).toBe(before);
  });

  it('allow: a token without the role is 403 forbidden; with it, 200', async () => {
    const user = await mint(hsKey, { sub: 'u', iss: 'identity', aud: 'api', roles: 'user' });
    const admin = await mint(hsKey, { sub: 'a', iss: 'identity', aud: 'api', roles: 'admin' });
    const before = seen();
    const denied = await call(gw, '/admin/x', bearer(user));
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body).error).toBe('forbidden');
    expect(String(denied.headers['www-authenticate'])).toContain('insufficient_scope');
    expect(seen()).toBe(before);
    expect((await call(gw, '/admin/x', bearer(admin))).status).toBe(200);
    expect((await call(gw, '/admin/x', bearer(admin), 'POST')).status).toBe(405);
  });

  it('key rotation: a token with a new kid is accepted after one refresh; 1,000 random kids cost a bounded number of fetches', async () => {
    await call(gw, '/rs/x', bearer(await mint(k1, { sub: 'p', aud: 'api' })));
    jwks.keys = [k1.jwk, k2.jwk];
    await new Promise((r) => setTimeout(r, 1100)); // past jwksMinRefreshInterval
    const before = jwks.fetches;
    const rotated = await call(gw, '/rs/x', bearer(await mint(k2, { sub: 'p2', aud: 'api' })));
    expect(rotated.status).toBe(200);
    expect(jwks.fetches).toBe(before + 1);

    const tokens = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) =>
        mint({ ...k1, kid: `random-${i}-${Math.random()}` }, { sub: 'x', aud: 'api' }),
      ),
    );
    const upstreamBefore = seen();
    const fetchesBefore = jwks.fetches;
    const started = Date.now();
    const statuses = await many(1000, 50, async (i) => (await call(gw, '/rs/x', bearer(tokens[i]!))).status);
    const seconds = (Date.now() - started) / 1000;
    expect(statuses.every((s) => s === 401)).toBe(true);
    expect(seen()).toBe(upstreamBefore);
    // One fetch per jwksMinRefreshInterval (1 s) at most, plus one.
    expect(jwks.fetches - fetchesBefore).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
  });

  it('nothing is routable without a gateway route: 404 no_route, and the upstream name as Host does not help', async () => {
    const before = seen();
    const res = await call(gw, '/v1/users', { host: 'users' });
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body).error).toBe('no_route');
    expect(seen()).toBe(before);
  });

  it('access lines carry the subject and tenant, never the token; metrics count by route, auth result and tenant', async () => {
    const token = await mint(hsKey, { sub: 'logged-user', iss: 'identity', aud: 'api', tenant: 'acme' });
    expect((await call(gw, '/hs/log', bearer(token))).status).toBe(200);
    await new Promise((r) => setTimeout(r, 50));
    const line = m.logs.find((l) => l.msg === 'access' && l.subject === 'logged-user');
    expect(line).toMatchObject({ auth: 'users-jwt', subject: 'logged-user', tenant: 'acme', status: 200 });
    expect(JSON.stringify(m.logs)).not.toContain(token);
    expect(JSON.stringify(m.logs)).not.toContain(token.split('.')[2]);
    const metrics = await (await fetch(`${m.admin}/metrics`)).text();
    expect(metrics).toMatch(/meshlet_gateway_requests_total\{route="users#0",auth="ok",tenant="other"\} \d+/);
    expect(metrics).toMatch(/meshlet_gateway_requests_total\{route="users#0",auth="invalid",tenant=""\} \d+/);
    expect(metrics).toMatch(
      /meshlet_gateway_jwks_fetches_total\{authenticator="partners-jwt",result="ok"\} \d+/,
    );
  });
});
