// A `registry` block without `type` is a static registry, as documented; a wrong type still names registry.type.
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { runCli, spawnMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream } from '../helpers/upstream-server.ts';

describe('registry type defaults to static', () => {
  it('registry: {endpoints} without type passes config check and routes to those endpoints', async () => {
    const app = await startUpstream();
    const file = writeConfig(`registry:\n  endpoints:\n    users: ["${app.endpoint}"]\n`);
    const check = await runCli(['config', 'check', file]);
    expect(check).toMatchObject({ code: 0, stderr: '' });
    expect(check.stdout).toMatch(/ok \(1 upstream\(s\), 0 route\(s\), registry static\)/);

    const mesh = await spawnMeshlet({ registry: { endpoints: { users: [app.endpoint] } } });
    try {
      const res = await request(`${mesh.outbound}/hello`, { headers: { host: 'users' } });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-upstream-port']).toBe(String(app.port));
      expect(app.requests.map((r) => r.url)).toEqual(['/hello']);
    } finally {
      mesh.proc.kill('SIGTERM');
      await mesh.exited;
      await app.close();
    }
  });

  it('a typo in the type (statc) → exit 2 naming registry.type and the accepted types', async () => {
    const file = writeConfig('registry:\n  type: statc\n  endpoints:\n    users: ["127.0.0.1:9001"]\n');
    const { code, stderr } = await runCli(['config', 'check', file]);
    expect(code).toBe(2);
    expect(stderr.trim()).toBe(
      `meshlet: invalid config: ${file}: registry.type: expected "static" (the default), "consul", "dns", "etcd" or "redis", got "statc"`,
    );
  });
});
