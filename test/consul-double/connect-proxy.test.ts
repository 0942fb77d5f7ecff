// The double's connect-proxy registrations: Consul's validation of Proxy.Upstreams, alias checks, /v1/health|catalog/connect.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from './consul-double.ts';
import { call } from './test-client.ts';

let consul: ConsulDouble;
beforeAll(async () => {
  consul = new ConsulDouble();
  await consul.start();
});
afterAll(async () => {
  await consul?.stop();
});

function proxy(
  upstreams: Record<string, unknown>[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    Kind: 'connect-proxy',
    ID: 'web-sidecar-proxy',
    Name: 'web-sidecar-proxy',
    Port: 21000,
    Proxy: { DestinationServiceName: 'web', DestinationServiceID: 'web', Upstreams: upstreams },
    ...extra,
  };
}

describe('PUT /v1/agent/service/register with Kind connect-proxy', () => {
  it('refuses two upstreams on one bind address and port, as Consul does', async () => {
    const r = await call(
      consul,
      'PUT',
      '/v1/agent/service/register',
      proxy([
        { DestinationName: 'users', LocalBindPort: 15001 },
        { DestinationName: 'billing', LocalBindAddress: '127.0.0.1', LocalBindPort: 15001 },
      ]),
    );
    expect(r.status).toBe(400);
    expect(r.text).toBe(
      'Validation failed: 1 error occurred:\n\t* upstreams cannot contain duplicates by local bind address and port or unix path; "127.0.0.1:15001" is specified twice\n\n',
    );
  });

  it('refuses an upstream with neither LocalBindPort nor LocalBindSocketPath, a proxy without port or destination', async () => {
    const r = await call(consul, 'PUT', '/v1/agent/service/register', proxy([{ DestinationName: 'users' }]));
    expect(r.status).toBe(400);
    expect(r.text).toContain('upstream local bind port or local socket path must be defined and nonzero');
    const r2 = await call(consul, 'PUT', '/v1/agent/service/register', {
      Kind: 'connect-proxy',
      Name: 'x-sidecar-proxy',
      Proxy: {},
    });
    expect(r2.status).toBe(400);
    expect(r2.text).toContain('2 errors occurred:');
    expect(r2.text).toContain('Proxy.DestinationServiceName must be non-empty for Connect proxy services');
    expect(r2.text).toContain('Port or SocketPath must be set for a Connect proxy');
    expect(consul.instances('web-sidecar-proxy')).toHaveLength(0);
  });

  it('accepts distinct binds (ports or sockets) and shows Proxy with Consul defaults; the alias check follows the service', async () => {
    expect(
      (
        await call(consul, 'PUT', '/v1/agent/service/register', {
          Name: 'web',
          Port: 8080,
          Check: { TTL: '10s', Status: 'passing' },
        })
      ).status,
    ).toBe(200);
    const r = await call(
      consul,
      'PUT',
      '/v1/agent/service/register',
      proxy(
        [
          { DestinationName: 'users', LocalBindPort: 15001 },
          { DestinationName: 'billing', LocalBindSocketPath: '/tmp/billing.sock' },
        ],
        { Checks: [{ Name: 'alias', AliasService: 'web' }] },
      ),
    );
    expect(r.status).toBe(200);
    const svc = (await call(consul, 'GET', '/v1/agent/service/web-sidecar-proxy')).json<
      Record<string, unknown>
    >();
    expect(svc.Kind).toBe('connect-proxy');
    expect(svc.Proxy).toMatchObject({
      DestinationServiceName: 'web',
      Upstreams: [
        { DestinationType: 'service', DestinationName: 'users', LocalBindPort: 15001 },
        { DestinationType: 'service', DestinationName: 'billing', LocalBindSocketPath: '/tmp/billing.sock' },
      ],
    });
    const alias = () => consul.checks('web-sidecar-proxy').find((c) => c.type === 'alias')!;
    expect(alias().status).toBe('passing');
    consul.setCheckStatus('service:web', 'critical', 'down');
    expect(alias().status).toBe('critical');

    // Only the proxy answers /connect/web; critical (alias) means not with ?passing.
    const all = (await call(consul, 'GET', '/v1/health/connect/web')).json<
      { Service: { ID: string; Kind: string } }[]
    >();
    expect(all.map((e) => [e.Service.ID, e.Service.Kind])).toEqual([['web-sidecar-proxy', 'connect-proxy']]);
    expect((await call(consul, 'GET', '/v1/health/connect/web?passing')).json<unknown[]>()).toEqual([]);
    consul.setCheckStatus('service:web', 'passing', 'ok');
    expect((await call(consul, 'GET', '/v1/health/connect/web?passing')).json<unknown[]>()).toHaveLength(1);
    const cat = (await call(consul, 'GET', '/v1/catalog/connect/web')).json<
      { ServiceID: string; ServiceKind: string }[]
    >();
    expect(cat.map((e) => [e.ServiceID, e.ServiceKind])).toEqual([['web-sidecar-proxy', 'connect-proxy']]);
    expect((await call(consul, 'GET', '/v1/health/connect/nobody')).json<unknown[]>()).toEqual([]);

    consul.deregisterService('web');
    expect(alias().status).toBe('critical');
    consul.deregisterService('web-sidecar-proxy');
  });
});
