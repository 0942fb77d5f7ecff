// Gateway `validate` mode against a real identity service: allowed, denied, the service down, and the per-token cache.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl, type IdentityService, many, startIdentityService } from './fixtures.ts';

describe('gateway validate (identity service)', () => {
  let upstream: TestUpstream;
  let identity: IdentityService;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    identity = await startIdentityService();
    identity.tokens.set('good-token', { user_id: 'u-7', tenant: 'acme', roles: ['user'] });
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      // The identity service is an upstream: the URL's host names it.
      registry: {
        endpoints: { users: [upstream.endpoint], 'identity-service': [`127.0.0.1:${identity.port}`] },
      },
      gateway: {
        auth: {
          identity: {
            type: 'validate',
            url: 'http://identity-service/auth/validate',
            cacheTtl: '30s',
            headers: { user_id: 'x-user-id', tenant: 'x-tenant-id' },
          },
        },
        routes: [{ match: { pathPrefix: '/api/' }, upstream: 'users', auth: ['identity'] }],
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
    await identity.close();
  });

  it('allowed: 200 and the identity fields mapped to headers; denied: 401 and nothing upstream', async () => {
    const ok = await call(gw, '/api/a', { authorization: 'Bearer good-token', 'x-user-id': 'forged' });
    expect(ok.status).toBe(200);
    const h = JSON.parse(ok.body).headers;
    expect(h['x-user-id']).toBe('u-7');
    expect(h['x-tenant-id']).toBe('acme');
    const before = upstream.requests.length;
    const denied = await call(gw, '/api/a', { authorization: 'Bearer bad-token' });
    expect(denied.status).toBe(401);
    expect(JSON.parse(denied.body).error).toBe('unauthorized');
    expect(upstream.requests.length).toBe(before);
  });

  it('1,000 requests with one token make at most 2 validation calls within the cache TTL', async () => {
    identity.tokens.set('burst-token', { user_id: 'u-9' });
    const before = identity.calls;
    const statuses = await many(
      1000,
      50,
      async () => (await call(gw, '/api/b', { authorization: 'Bearer burst-token' })).status,
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(identity.calls - before).toBeLessThanOrEqual(2);
    expect(identity.calls - before).toBeGreaterThanOrEqual(1);
  });

  it('identity service down: 503 auth_unavailable (fail closed), nothing upstream', async () => {
    await identity.close();
    const before = upstream.requests.length;
    const res = await call(gw, '/api/c', { authorization: 'Bearer never-seen-token' });
    expect(res.status).toBe(503);
    expect(res.headers['x-meshlet-error']).toBe('auth_unavailable');
    expect(JSON.parse(res.body).error).toBe('auth_unavailable');
    expect(upstream.requests.length).toBe(before);
    const metrics = await (await fetch(`${m.admin}/metrics`)).text();
    expect(metrics).toMatch(
      /meshlet_gateway_validate_calls_total\{authenticator="identity",result="failed"\} [1-9]/,
    );
    expect(metrics).toMatch(
      /meshlet_gateway_requests_total\{route="users#0",auth="unavailable",tenant=""\} [1-9]/,
    );
  });
});
