// SIGHUP reloads routes and endpoints without dropping connections; an invalid file is refused.
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('reload on SIGHUP', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let mesh: MeshletProcess;

  beforeAll(async () => {
    a = await startUpstream();
    b = await startUpstream();
    mesh = await spawnMeshlet({ registry: { type: 'static', endpoints: { users: [a.endpoint] } } });
  });
  afterAll(async () => {
    mesh.proc.kill('SIGKILL');
    await Promise.all([a.close(), b.close()]);
  });

  async function servedBy(): Promise<number> {
    const res = await request(`${mesh.outbound}/`, { headers: { host: 'users' } });
    await res.body.dump();
    return Number(res.headers['x-upstream-port']);
  }

  async function until(check: () => Promise<boolean>, ms = 3000): Promise<boolean> {
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      if (await check()) return true;
      await new Promise((r) => setTimeout(r, 25));
    }
    return false;
  }

  it('applies a new endpoint set, and refuses an invalid file keeping the running config', async () => {
    expect(await servedBy()).toBe(a.port);
    const ports = { outbound: Number(new URL(mesh.outbound).port), admin: Number(new URL(mesh.admin).port) };
    const listeners = { outbound: { port: ports.outbound }, admin: { port: ports.admin } };
    writeFileSync(
      mesh.configFile,
      stringify({ listeners, registry: { type: 'static', endpoints: { users: [b.endpoint] } } }),
    );
    mesh.proc.kill('SIGHUP');
    expect(await until(async () => (await servedBy()) === b.port)).toBe(true);

    writeFileSync(mesh.configFile, 'upstreams:\n  users: { timeouts: { connect: soon } }\n');
    mesh.proc.kill('SIGHUP');
    expect(
      await until(async () =>
        mesh.stdout.some((l) => l.includes('config reload refused; keeping the running config')),
      ),
    ).toBe(true);
    expect(await servedBy()).toBe(b.port);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_config_reloads_total\{source="config",result="ok"\} 1$/m);
    expect(metrics).toMatch(/^meshlet_config_reloads_total\{source="config",result="failed"\} 1$/m);
  });

  it('rotates the admin token live, and names the listener keys that need a restart', async () => {
    const ports = { outbound: Number(new URL(mesh.outbound).port), admin: Number(new URL(mesh.admin).port) };
    const endpoints = { users: [b.endpoint] };
    const write = (listeners: object) =>
      writeFileSync(mesh.configFile, stringify({ listeners, registry: { type: 'static', endpoints } }));
    const reset = (token?: string) =>
      request(`${mesh.admin}/upstreams/users/breaker/reset`, {
        method: 'POST',
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      }).then(async (r) => {
        await r.body.dump();
        return r.statusCode;
      });
    const reloads = () => mesh.stdout.filter((l) => l.includes('"config reloaded"')).length;
    const earlier = mesh.stdout.length;
    const restartLines = () =>
      mesh.stdout.slice(earlier).filter((l) => l.includes('listener changes need a restart'));

    let before = reloads();
    write({ outbound: { port: ports.outbound }, admin: { port: ports.admin, token: 'token-one-abc' } });
    mesh.proc.kill('SIGHUP');
    expect(await until(async () => reloads() > before)).toBe(true);
    expect(await reset()).toBe(403);
    expect(await reset('token-one-abc')).toBe(200);

    before = reloads();
    write({ outbound: { port: ports.outbound }, admin: { port: ports.admin, token: 'token-two-abc' } });
    mesh.proc.kill('SIGHUP');
    expect(await until(async () => reloads() > before)).toBe(true);
    expect(await reset('token-one-abc')).toBe(403);
    expect(await reset('token-two-abc')).toBe(200);
    expect(restartLines()).toEqual([]);

    before = reloads();
    write({ outbound: { port: ports.outbound + 1 }, admin: { port: ports.admin, token: 'token-two-abc' } });
    mesh.proc.kill('SIGHUP');
    expect(await until(async () => reloads() > before)).toBe(true);
    const [line] = restartLines();
    expect(JSON.parse(line!).keys).toEqual(['listeners.outbound.port']);
    expect(line).not.toContain('token-two');
    expect(await servedBy()).toBe(b.port); // still on the running listener
  });
});
