// The watched endpoints file: an edit moves traffic within 1 s; an invalid edit keeps the last good set.
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

async function portServing(mesh: InProcessMeshlet): Promise<string> {
  const res = await request(`${mesh.outbound}/`, { headers: { host: 'users' } });
  await res.body.dump();
  return String(res.headers['x-upstream-port']);
}

async function metric(mesh: InProcessMeshlet, line: string): Promise<number> {
  const text = await (await request(`${mesh.admin}/metrics`)).body.text();
  const found = text.split('\n').find((l) => l.startsWith(line));
  return found === undefined ? 0 : Number(found.split(' ').at(-1));
}

describe('static registry file', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let file: string;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    a = await startUpstream();
    b = await startUpstream();
    file = writeConfig(`users: ["${a.endpoint}"]\n`, 'endpoints.yaml');
    mesh = await startMeshlet({ registry: { type: 'static', file }, accessLog: { enabled: false } });
  });
  afterAll(async () => {
    await mesh.close();
    await Promise.all([a.close(), b.close()]);
  });

  it('an edit moves traffic within 1 s', async () => {
    expect(await portServing(mesh)).toBe(String(a.port));
    const started = performance.now();
    writeFileSync(file, `users:\n  - { address: 127.0.0.1, port: ${b.port} }\n`);
    let elapsed = Number.POSITIVE_INFINITY;
    while (performance.now() - started < 2000) {
      if ((await portServing(mesh)) === String(b.port)) {
        elapsed = performance.now() - started;
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(elapsed).toBeLessThan(1000);
    expect(
      await metric(mesh, 'meshlet_config_reloads_total{source="endpoints_file",result="ok"}'),
    ).toBeGreaterThan(0);
  });

  it('an invalid edit is refused, counted, and the last good endpoints kept', async () => {
    const before = await metric(
      mesh,
      'meshlet_config_reloads_total{source="endpoints_file",result="failed"}',
    );
    // Replace the file atomically, as editors and config managers do.
    const tmp = join(dirname(file), 'endpoints.yaml.tmp');
    writeFileSync(tmp, 'users: ["not-an-endpoint"]\n');
    renameSync(tmp, file);
    const started = performance.now();
    while (performance.now() - started < 2000) {
      if (
        (await metric(mesh, 'meshlet_config_reloads_total{source="endpoints_file",result="failed"}')) > before
      )
        break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await metric(mesh, 'meshlet_config_reloads_total{source="endpoints_file",result="failed"}')).toBe(
      before + 1,
    );
    expect(await portServing(mesh)).toBe(String(b.port));
    const refused = mesh.logs.find(
      (l) => l.msg === 'endpoints file refused; keeping the last good endpoints',
    );
    expect(String(refused?.reason)).toMatch(/users\[0\]: expected "host:port"/);
  });
});

describe('static endpoint protocol', () => {
  it("an endpoint's own protocol (config or file) shows on GET /upstreams; none is null", async () => {
    const file = writeConfig(
      'orders:\n  - { address: 127.0.0.1, port: 9003, protocol: http2 }\n',
      'endpoints.yaml',
    );
    const mesh = await startMeshlet({
      registry: {
        type: 'static',
        file,
        endpoints: { users: [{ address: '127.0.0.1', port: 9001, protocol: 'grpc' }, '127.0.0.1:9002'] },
      },
    });
    try {
      const res = await request(`${mesh.admin}/upstreams`);
      const body = (await res.body.json()) as {
        upstreams: Record<string, { endpoints: { id: string; protocol: string | null }[] }>;
      };
      const protocols = (name: string) => body.upstreams[name]!.endpoints.map((e) => [e.id, e.protocol]);
      expect(protocols('users')).toEqual([
        ['127.0.0.1:9001', 'grpc'],
        ['127.0.0.1:9002', null],
      ]);
      expect(protocols('orders')).toEqual([['127.0.0.1:9003', 'http2']]);
    } finally {
      await mesh.close();
    }
  });
});
