// Gateway `validate` with `failOpen: true`: an identity service that cannot be asked lets the request go on unauthenticated, but never past `allow`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl, type IdentityService, startIdentityService } from './fixtures.ts';

describe('gateway validate with failOpen', () => {
  let upstream: TestUpstream;
  let identity: IdentityService;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    identity = await startIdentityService();
    identity.tokens.set('good-token', { user_id: 'u-7', roles: ['admin'] });
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      gateway: {
        auth: {
          identity: {
            type: 'validate',
            url: identity.url,
            cacheTtl: '30s',
            timeout: '1s',
            failOpen: true,
            headers: { user_id: 'x-user-id' },
          },
        },
        routes: [
          {
            name: 'admin',
            match: { pathPrefix: '/admin/' },
            upstream: 'users',
            auth: ['identity'],
            allow: { roles: ['admin'] },
          },
          { name: 'api', match: { pathPrefix: '/api/' }, upstream: 'users', auth: ['identity'] },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
    await identity.close().catch(() => undefined);
  });

  it('while the identity service answers, failOpen changes nothing: allowed → 200, denied → 401', async () => {
    const ok = await call(gw, '/api/a', { authorization: 'Bearer good-token' });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).headers['x-user-id']).toBe('u-7');
    expect((await call(gw, '/admin/a', { authorization: 'Bearer good-token' })).status).toBe(200);
    const before = upstream.requests.length;
    const denied = await call(gw, '/api/a', { authorization: 'Bearer bad-token' });
    expect(denied.status).toBe(401);
    expect(upstream.requests.length).toBe(before);
  });

  it('identity service down: a bearer request goes on unauthenticated (200), with no identity header, a forged one stripped', async () => {
    await identity.close();
    const before = upstream.requests.length;
    const res = await call(gw, '/api/b', { authorization: 'Bearer never-seen', 'x-user-id': 'forged' });
    expect(res.status).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
    expect(JSON.parse(res.body).headers['x-user-id']).toBeUndefined();
    // It went on because the service could not be asked: the metric says so.
    const metrics = await (await fetch(`${m.admin}/metrics`)).text();
    expect(metrics).toMatch(
      /meshlet_gateway_validate_calls_total\{authenticator="identity",result="failed"\} [1-9]/,
    );
    expect(metrics).toMatch(/meshlet_gateway_requests_total\{route="api",auth="unavailable",tenant=""\} 1\n/);
  });

  it('identity service down: a request with no credential at all is still 401 (failOpen is no public route)', async () => {
    const before = upstream.requests.length;
    const res = await call(gw, '/api/c');
    expect(res.status).toBe(401);
    expect(res.headers['x-meshlet-error']).toBe('unauthorized');
    expect(upstream.requests.length).toBe(before);
  });

  it('identity service down: a route with allow refuses the unauthenticated request (403), nothing upstream', async () => {
    const before = upstream.requests.length;
    const res = await call(gw, '/admin/b', { authorization: 'Bearer another-unseen' });
    expect(res.status).toBe(403);
    expect(res.headers['x-meshlet-error']).toBe('forbidden');
    expect(upstream.requests.length).toBe(before);
  });
});
