// An etcd cluster restored empty (revision backwards): instances live a moment ago stay one lease TTL while their meshlets put them back.
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, metric, within } from '../consul/consul-helpers.ts';
import { EtcdServer } from './servers.ts';

const PREFIX = '/meshlet/services/users/';
const record = (port: number): string => JSON.stringify({ address: '127.0.0.1', port });

/** The endpoint ids meshlet holds for `users`. */
async function users(admin: string): Promise<string[]> {
  const view = await adminGet<{ upstreams: Record<string, { endpoints: { id: string }[] }> }>(
    admin,
    '/upstreams',
  );
  return (view.body.upstreams.users?.endpoints ?? []).map((e) => e.id).sort();
}

async function put(server: EtcdServer, entries: [string, string][]): Promise<void> {
  const client = new Etcd3({ hosts: server.url });
  try {
    for (const [key, value] of entries) await client.put(key).value(value).exec();
  } finally {
    client.close();
  }
}

describe('etcd restored empty', () => {
  let server: EtcdServer;
  let a: TestUpstream;
  let b: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    server = new EtcdServer();
    await server.start();
    [a, b] = await Promise.all([startUpstream(), startUpstream()]);
    // Some history after the instances, so the restored (empty) member's revision is lower.
    await put(server, [
      [`${PREFIX}a`, record(a.port)],
      [`${PREFIX}b`, record(b.port)],
      ...Array.from({ length: 5 }, (_, i): [string, string] => ['/other/x', String(i)]),
    ]);
    mesh = await startMeshlet({
      registry: { type: 'etcd', etcd: { hosts: [server.url], leaseTtl: '2s' } },
      upstreams: { users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    await within(3000, async () => (await users(mesh.admin)).length === 2, 'a and b discovered');
  }, 30_000);
  afterAll(async () => {
    await mesh?.close();
    await Promise.all([a?.close(), b?.close()]);
    await server?.close();
  });

  it('keeps the lost instances one lease TTL: the one put back stays, the other goes', async () => {
    const both = [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`].sort();
    const resyncs = async (): Promise<number> =>
      (await metric(mesh.admin, 'meshlet_registry_etcd_resyncs_total{reason="disconnected"}')) +
      (await metric(mesh.admin, 'meshlet_registry_etcd_resyncs_total{reason="watch_error"}'));
    const before = await resyncs();
    await server.stop();
    server.wipe();
    await server.start();
    await within(8000, async () => (await resyncs()) > before, 'resynced from the restored member');
    expect(mesh.logs.some((l) => String(l.msg).startsWith('etcd revision went backwards'))).toBe(true);
    // The restored member holds neither key; both were live a moment ago: both still routed.
    expect(await users(mesh.admin)).toEqual(both);
    // a's meshlet puts it back (as it does within ttl/3); nobody puts b back.
    await put(server, [[`${PREFIX}a`, record(a.port)]]);
    await within(5000, async () => (await users(mesh.admin)).length === 1, 'b dropped after the TTL');
    expect(await users(mesh.admin)).toEqual([`127.0.0.1:${a.port}`]);
  }, 30_000);
});
