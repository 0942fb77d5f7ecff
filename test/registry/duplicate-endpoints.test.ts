// An endpoint listed twice (a static list, a DNS answer repeating an address) is one endpoint: one handle, one pool, across every re-apply.
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric, via, within } from '../consul/consul-helpers.ts';
import { type InProcessMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { DnsServer } from './servers.ts';

const OK = 'meshlet_config_reloads_total{source="endpoints_file",result="ok"}';
const HEALTHY = 'meshlet_upstream_endpoints{upstream="users",state="healthy"}';

/** Four requests to `users` through `mesh` (every listed handle gets one), each answered by `app`. */
async function useAll(mesh: InProcessMeshlet, app: TestUpstream): Promise<void> {
  for (let i = 0; i < 4; i++) expect(await via(mesh.outbound, 'users')).toBe(String(app.port));
}

describe('an endpoint listed twice', () => {
  let app: TestUpstream;
  beforeAll(async () => {
    app = await startUpstream();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('in registry.file: one endpoint and one pool, however often the file is applied again', async () => {
    const file = writeConfig(`users: ["${app.endpoint}", "${app.endpoint}"]\n`, 'endpoints.yaml');
    const mesh = await startMeshlet({
      registry: { type: 'static', file },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    try {
      const users = mesh.daemon.table.get('users')!;
      await useAll(mesh, app);
      for (let round = 1; round <= 5; round++) {
        const before = await metric(mesh.admin, OK);
        // A changed text (a comment) is parsed and applied again; the endpoints are the same.
        writeFileSync(file, `# edit ${round}\nusers: ["${app.endpoint}", "${app.endpoint}"]\n`);
        await within(3000, async () => (await metric(mesh.admin, OK)) > before, 'file applied');
        await useAll(mesh, app);
      }
      expect(users.endpoints.map((h) => h.endpoint.id)).toEqual([app.endpoint]);
      expect(users.poolCount).toBe(1);
      expect(await metric(mesh.admin, HEALTHY)).toBe(1);
    } finally {
      await mesh.close();
    }
  });

  it('in a DNS answer (the same A record twice): one endpoint and one pool across re-resolutions', async () => {
    const dns = new DnsServer();
    await dns.start();
    const name = 'users.default.svc.cluster.local';
    dns.set(name, [
      { type: 'A', ttl: 0, data: '127.0.0.1' },
      { type: 'A', ttl: 0, data: '127.0.0.1' },
    ]);
    const mesh = await startMeshlet({
      registry: {
        type: 'dns',
        dns: { servers: [dns.address], minTtl: '100ms', maxTtl: '1s', timeout: '500ms' },
        upstreams: { users: { host: name, port: app.port } },
      },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    try {
      const users = mesh.daemon.table.get('users')!;
      const snapshots = 'meshlet_registry_dns_snapshots_total';
      for (let round = 0; round < 5; round++) {
        const before = await metric(mesh.admin, snapshots);
        await within(3000, async () => (await metric(mesh.admin, snapshots)) > before, 're-resolved');
        await useAll(mesh, app);
      }
      expect(users.endpoints.map((h) => h.endpoint.id)).toEqual([app.endpoint]);
      expect(users.poolCount).toBe(1);
      expect(await metric(mesh.admin, HEALTHY)).toBe(1);
    } finally {
      await mesh.close();
      await dns.close();
    }
  });
});
