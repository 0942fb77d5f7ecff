// A misbehaving DNS server: AAAA never answered, SRV records with port 0, one SRV target whose lookup fails.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, via, within } from '../consul/consul-helpers.ts';
import { DnsServer, type ZoneRecord } from './servers.ts';

const SRV = '_http._tcp.users.test';

/** The endpoint ids meshlet holds for `upstream`. */
async function endpointIds(admin: string, upstream: string): Promise<string[]> {
  const view = await adminGet<{ upstreams: Record<string, { endpoints: { id: string }[] }> }>(
    admin,
    '/upstreams',
  );
  return (view.body.upstreams[upstream]?.endpoints ?? []).map((e) => e.id).sort();
}

const srv = (port: number, target: string, weight = 1): ZoneRecord => ({
  type: 'SRV',
  ttl: 1,
  data: { priority: 10, weight, port, target },
});

describe('dns registry against a misbehaving server', () => {
  let dns: DnsServer;
  let up: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    dns = new DnsServer();
    await dns.start();
    up = await startUpstream();
    dns.set('v4only.test', [{ type: 'A', ttl: 1, data: '127.0.0.1' }]);
    dns.set('dropped.test', [{ type: 'A', ttl: 1, data: '127.0.0.1' }]);
    for (const n of [1, 3, 4]) dns.set(`t${n}.test`, [{ type: 'A', ttl: 1, data: `127.0.0.${n}` }]);
    dns.set(SRV, [srv(up.port, 't1.test'), srv(0, 't4.test'), srv(8443, 't3.test')]);
    // An IPv4-only resolver: SERVFAIL for every AAAA question; and one that never answers them.
    dns.failTypes.set('AAAA', 'servfail');
    mesh = await startMeshlet({
      registry: {
        type: 'dns',
        dns: { servers: [dns.address], minTtl: '100ms', maxTtl: '1s', timeout: '150ms' },
        upstreams: {
          v4only: { host: 'v4only.test', port: up.port },
          users: { srv: SRV },
        },
      },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
  }, 30_000);
  afterAll(async () => {
    await mesh?.close();
    await up?.close();
    await dns?.close();
  });

  it('a host whose AAAA question fails (SERVFAIL or no answer) routes to its A addresses', async () => {
    await within(3000, async () => (await via(mesh.outbound, 'v4only')) === String(up.port), 'v4only routed');
    dns.failTypes.set('AAAA', 'drop');
    dns.set('v4only.test', [{ type: 'A', ttl: 1, data: '127.0.0.2' }]);
    // The A change still arrives while AAAA questions time out.
    await within(
      4000,
      async () => (await endpointIds(mesh.admin, 'v4only'))[0] === `127.0.0.2:${up.port}`,
      'moved',
    );
    dns.failTypes.set('AAAA', 'servfail');
  });

  it('an SRV record with port 0 is left out', async () => {
    await within(3000, async () => (await endpointIds(mesh.admin, 'users')).length > 0, 'users resolved');
    expect(await endpointIds(mesh.admin, 'users')).toEqual([`127.0.0.1:${up.port}`, '127.0.0.3:8443']);
  });

  it('an SRV target whose own lookup fails keeps its endpoints; the other targets still update', async () => {
    // t3 stops answering (and leaves the additional section): its A/AAAA lookups fail.
    dns.failNames.set('t3.test', 'servfail');
    // Meanwhile t4 gets a usable port: that change must arrive.
    dns.set(SRV, [srv(up.port, 't1.test'), srv(9000, 't4.test'), srv(8443, 't3.test')]);
    await within(
      4000,
      async () => (await endpointIds(mesh.admin, 'users')).includes('127.0.0.4:9000'),
      't4 applied',
    );
    expect(await endpointIds(mesh.admin, 'users')).toEqual([
      `127.0.0.1:${up.port}`,
      '127.0.0.3:8443',
      '127.0.0.4:9000',
    ]);
    dns.failNames.delete('t3.test');
  });
});
