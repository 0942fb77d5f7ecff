// Meta.meshlet_protocol: registered from service.protocol, read back into each discovered endpoint's protocol.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, consulRegistry, within } from './consul-helpers.ts';

interface EndpointView {
  id: string;
  port: number;
  protocol: string | null;
}
type UpstreamsView = { upstreams: Record<string, { endpoints: EndpointView[] }> };

/** The endpoints `GET /upstreams` shows for one upstream, by port. */
async function endpointsOf(admin: string, upstream: string): Promise<Map<number, EndpointView>> {
  const { body } = await adminGet<UpstreamsView>(admin, '/upstreams');
  return new Map((body.upstreams[upstream]?.endpoints ?? []).map((e) => [e.port, e]));
}

describe('Consul Meta.meshlet_protocol', () => {
  let double: ConsulDouble;
  let grpcApp: TestUpstream;
  let plainApp: TestUpstream;
  let peers: TestUpstream[];
  let grpcMesh: InProcessMeshlet;
  let plainMesh: InProcessMeshlet;
  let caller: InProcessMeshlet;

  beforeAll(async () => {
    double = new ConsulDouble();
    await double.start();
    const apps = await Promise.all(Array.from({ length: 8 }, () => startUpstream()));
    [grpcApp, plainApp, peers] = [apps[0]!, apps[1]!, apps.slice(2)];
    const instance = (name: string, app: TestUpstream, protocol?: 'grpc') =>
      startMeshlet({
        service: { name, port: app.port, address: '127.0.0.1', ...(protocol && { protocol }) },
        registry: consulRegistry(double, { serviceId: `${name}-1`, check: { interval: 500, timeout: 200 } }),
        accessLog: { enabled: false },
        shutdown: { drainDelay: 0 },
      });
    grpcMesh = await instance('greeter', grpcApp, 'grpc');
    plainMesh = await instance('pages', plainApp);
    // Peers registered by other meshlets (or by hand): each value a caller may meet.
    const values = ['http2', 'grpc', undefined, 'http3', 'GRPC'];
    values.forEach((value, i) =>
      double.addInstance({
        service: 'users',
        id: `users-${i}`,
        port: peers[i]!.port,
        meta: value === undefined ? {} : { meshlet_protocol: value },
      }),
    );
    await double.waitFor(
      (d) => d.checks('greeter-1')[0]?.status === 'passing' && d.checks('pages-1')[0]?.status === 'passing',
      3000,
      'both instances registered and passing',
    );
    caller = await startMeshlet({
      registry: consulRegistry(double),
      upstreams: { greeter: {}, pages: {}, users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    await within(3000, async () => (await adminGet(caller.admin, '/ready')).status === 200, 'first sync');
  });
  afterAll(async () => {
    await Promise.all([caller?.close(), grpcMesh?.close(), plainMesh?.close()]);
    await double?.stop();
    await Promise.all([grpcApp, plainApp, ...(peers ?? [])].map((u) => u?.close()));
  });

  it('registers Meta.meshlet_protocol = service.protocol, http1 included (the default)', () => {
    expect(double.instances('greeter')[0]!.meta).toMatchObject({ meshlet_protocol: 'grpc' });
    expect(double.instances('pages')[0]!.meta).toMatchObject({ meshlet_protocol: 'http1' });
  });

  it("a caller's meshlet shows the protocol its peers registered on GET /upstreams, without config", async () => {
    const greeter = await endpointsOf(caller.admin, 'greeter');
    expect(greeter.get(grpcApp.port)).toMatchObject({ id: `127.0.0.1:${grpcApp.port}`, protocol: 'grpc' });
    const pages = await endpointsOf(caller.admin, 'pages');
    expect(pages.get(plainApp.port)?.protocol).toBe('http1');
  });

  it('unknown values are ignored (null: the upstream protocol applies), logged once, and nothing breaks', async () => {
    const users = await endpointsOf(caller.admin, 'users');
    expect(users.size).toBe(5);
    expect([0, 1, 2, 3, 4].map((i) => users.get(peers[i]!.port)?.protocol)).toEqual([
      'http2',
      'grpc',
      null,
      null,
      null,
    ]);
    // A change in Consul (a new snapshot with the same values) logs nothing new.
    double.addInstance({
      service: 'users',
      id: 'users-5',
      port: peers[5]!.port,
      meta: { meshlet_protocol: 'http3' },
    });
    await within(1000, async () => (await endpointsOf(caller.admin, 'users')).size === 6, 'sixth endpoint');
    const warnings = caller.logs.filter((l) => String(l.msg).includes('unknown Meta.meshlet_protocol'));
    expect(warnings.map((w) => `${String(w.upstream)} ${String(w.meshletProtocol)}`).sort()).toEqual([
      'users GRPC',
      'users http3',
    ]);
    expect((await adminGet(caller.admin, '/ready')).status).toBe(200);
  });
});
