// The instance's connect-proxy registration in the Consul double: fields, local binds, lifecycle, on-demand upstreams, /v1/health/connect.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ConsulDouble, type ServiceRecord } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { consulRegistry, within } from './consul-helpers.ts';

let consul: ConsulDouble;
let app: TestUpstream;
let usersApp: TestUpstream;

beforeAll(async () => {
  consul = new ConsulDouble();
  await consul.start();
  app = await startUpstream();
  usersApp = await startUpstream();
});
afterAll(async () => {
  await consul?.stop();
  await app?.close();
  await usersApp?.close();
});

/** A Consul-mode meshlet with mTLS through the double's Connect CA, so its inbound listener runs. */
function webMeshlet(extra: Record<string, unknown> = {}): Promise<InProcessMeshlet> {
  return startMeshlet({
    service: { name: 'web', port: app.port, address: '127.0.0.1', protocol: 'http2' },
    listeners: { inbound: { address: '127.0.0.1', port: 0 } },
    registry: consulRegistry(consul, {
      serviceId: 'web-1',
      check: { interval: '200ms', timeout: '150ms' },
      sidecarProxy: { upstreamPorts: { from: 21300, to: 21399 }, debounce: '100ms' },
    }),
    tls: { source: 'consul' },
    upstreams: { users: {}, billing: {} },
    shutdown: { drainDelay: 0 },
    ...extra,
  } as never);
}

function sidecar(): ServiceRecord | undefined {
  return consul.instances('web-sidecar-proxy')[0];
}

type Upstream = { DestinationName: string; LocalBindAddress: string; LocalBindPort: number };

describe('the sidecar proxy registration', () => {
  it('registers web-1-sidecar-proxy with Kind, Port, Proxy and a usable local bind per upstream; deregisters with the service', async () => {
    const m = await webMeshlet();
    try {
      await within(5000, () => sidecar() !== undefined, 'sidecar registered');
      const s = sidecar()!;
      const inbound = m.daemon.addresses().inbound!.port;
      expect(s).toMatchObject({
        id: 'web-1-sidecar-proxy',
        name: 'web-sidecar-proxy',
        kind: 'connect-proxy',
        port: inbound,
      });
      expect(s.meta.meshlet_inbound).toBe('mtls');
      const proxy = s.proxy as Record<string, unknown> & { Upstreams: Upstream[] };
      expect(proxy).toMatchObject({
        DestinationServiceName: 'web',
        DestinationServiceID: 'web-1',
        LocalServiceAddress: '127.0.0.1',
        LocalServicePort: app.port,
        Config: { protocol: 'http2' },
      });
      const names = proxy.Upstreams.map((u) => u.DestinationName).sort();
      expect(names).toEqual(['billing', 'users']);
      // Every bind is a real per-upstream listener on 127.0.0.1 that routes to that upstream.
      const ports = new Set(proxy.Upstreams.map((u) => u.LocalBindPort));
      expect(ports.size).toBe(2);
      for (const u of proxy.Upstreams) {
        expect(u.LocalBindAddress).toBe('127.0.0.1');
        const res = await request(`http://127.0.0.1:${u.LocalBindPort}/`);
        expect(res.headers['x-meshlet-error'] ?? 'answered').not.toBe('no_route');
        await res.body.dump();
      }
      const checks = consul.checks('web-1-sidecar-proxy');
      expect(checks.map((c) => c.type).sort()).toEqual(['alias', 'ttl']);
      await within(
        5000,
        () => consul.checks('web-1-sidecar-proxy').every((c) => c.status === 'passing'),
        'sidecar checks passing',
      );
    } finally {
      await m.close();
    }
    expect(sidecar()).toBeUndefined();
    expect(consul.instances('web')).toHaveLength(0);
  });

  it('is registered again within a tick when the agent forgets it', async () => {
    const m = await webMeshlet();
    try {
      await within(5000, () => sidecar() !== undefined, 'sidecar registered');
      consul.deregisterService('web-1-sidecar-proxy');
      expect(sidecar()).toBeUndefined();
      await within(3000, () => sidecar() !== undefined, 'sidecar registered again');
      consul.restart();
      await within(
        3000,
        () => sidecar() !== undefined && consul.instances('web').length === 1,
        'both back after an agent restart',
      );
    } finally {
      await m.close();
    }
  });

  it('lists an on-demand upstream within 2 s of its first use, with its own listener', async () => {
    consul.addInstance({ service: 'users', port: usersApp.port });
    consul.addInstance({ service: 'search', port: usersApp.port });
    const m = await webMeshlet();
    try {
      await within(5000, () => sidecar() !== undefined, 'sidecar registered');
      const before = (sidecar()!.proxy as { Upstreams: Upstream[] }).Upstreams.map((u) => u.DestinationName);
      expect(before).not.toContain('search');
      const res = await request(`${m.outbound}/`, { headers: { host: 'search' } });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
      const took = await within(
        2000,
        () =>
          (sidecar()?.proxy as { Upstreams: Upstream[] }).Upstreams.some(
            (u) => u.DestinationName === 'search',
          ),
        'search listed',
      );
      expect(took).toBeLessThan(2000);
      const bind = (sidecar()!.proxy as { Upstreams: Upstream[] }).Upstreams.find(
        (u) => u.DestinationName === 'search',
      )!;
      const viaBind = await request(`http://127.0.0.1:${bind.LocalBindPort}/`);
      expect(viaBind.statusCode).toBe(200);
      await viaBind.body.dump();
    } finally {
      await m.close();
      consul.removeInstance(`users-127.0.0.1-${usersApp.port}`);
      consul.removeInstance(`search-127.0.0.1-${usersApp.port}`);
    }
  });

  it('no inbound listener (no tls): the service alone, no connect-proxy with a made-up port', async () => {
    const m = await startMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: consulRegistry(consul, {
        serviceId: 'web-plain',
        check: { interval: '200ms', timeout: '150ms' },
      }),
      shutdown: { drainDelay: 0 },
    });
    try {
      await within(5000, () => consul.instances('web').length === 1, 'web registered');
      await new Promise((r) => setTimeout(r, 400));
      expect(sidecar()).toBeUndefined();
    } finally {
      await m.close();
    }
  });
});

describe('discovery through /v1/health/connect', () => {
  it('filters.NAME.connect: only instances with a sidecar, dialled at the sidecar port over mTLS', async () => {
    const users = await startMeshlet({
      service: { name: 'users', port: usersApp.port, address: '127.0.0.1' },
      listeners: { inbound: { address: '127.0.0.1', port: 0 } },
      registry: consulRegistry(consul, {
        serviceId: 'users-1',
        check: { interval: '200ms', timeout: '150ms' },
      }),
      tls: { source: 'consul' },
      shutdown: { drainDelay: 0 },
    });
    // A plain instance without a sidecar: /v1/health/service lists it, /v1/health/connect does not.
    consul.addInstance({ service: 'users', id: 'users-legacy', port: 1 });
    const web = await webMeshlet({
      upstreams: { users: {} },
      registry: consulRegistry(consul, {
        serviceId: 'web-1',
        check: { interval: '200ms', timeout: '150ms' },
        filters: { users: { connect: true } },
      }),
    });
    try {
      await within(5000, () => consul.instances('users-sidecar-proxy').length === 1, 'users sidecar');
      const seen = await (await request(`${consul.url}/v1/health/connect/users?passing`)).body.json();
      expect((seen as { Service: { ID: string } }[]).map((e) => e.Service.ID)).toEqual([
        'users-1-sidecar-proxy',
      ]);
      await within(
        5000,
        async () => {
          const r = await request(`${web.outbound}/`, { headers: { host: 'users' } });
          await r.body.dump();
          return r.statusCode === 200;
        },
        'web reaches users through its sidecar',
      );
      const view = (await (await request(`${web.admin}/upstreams`)).body.json()) as {
        upstreams: Record<string, { endpoints: { address: string; port: number; tls: string }[] }>;
      };
      expect(view.upstreams.users!.endpoints).toHaveLength(1);
      expect(view.upstreams.users!.endpoints[0]).toMatchObject({
        port: users.daemon.addresses().inbound!.port,
        tls: 'mtls',
      });
    } finally {
      await web.close();
      await users.close();
      consul.removeInstance('users-legacy');
    }
  });
});
