// POST|DELETE /drain flip /ready and the Consul check while requests pass; GET /config hides every secret; GET / lists the endpoints.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, spawnMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

async function call(url: string, method: 'GET' | 'POST' | 'DELETE', headers: Record<string, string> = {}) {
  const res = await request(url, { method, headers });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

async function eventually(probe: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const started = performance.now();
  while (!probe()) {
    if (performance.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('POST|DELETE /drain with Consul', () => {
  let double: ConsulDouble;
  let app: TestUpstream;
  let mesh: InProcessMeshlet;
  const id = 'web-drain';

  beforeAll(async () => {
    double = new ConsulDouble();
    await double.start();
    app = await startUpstream();
    double.addInstance({ service: 'users', id: 'users-1', port: app.port });
    mesh = await startMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: {
        type: 'consul',
        consul: { address: double.url },
        serviceId: id,
        check: { interval: '200ms', timeout: '150ms' },
      } as never,
      upstreams: { users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    await double.waitFor((d) => d.checks(id)[0]?.status === 'passing', 5000, 'registered passing');
  });
  afterAll(async () => {
    await mesh?.close();
    await double?.stop();
    await app?.close();
  });

  const through = async () => {
    const res = await request(`${mesh.outbound}/`, { headers: { host: 'users' } });
    await res.body.dump();
    return res.statusCode;
  };

  it('POST /drain: /ready 503 and the check critical, requests still pass; again is a no-op; DELETE restores both', async () => {
    expect((await call(`${mesh.admin}/ready`, 'GET')).status).toBe(200);
    const drained = await call(`${mesh.admin}/drain`, 'POST');
    expect(drained).toEqual({ status: 200, body: { draining: true, shuttingDown: false } });
    const ready = await call(`${mesh.admin}/ready`, 'GET');
    expect(ready.status).toBe(503);
    expect(ready.body.checks).toMatchObject({
      draining: { ok: false, detail: 'drained by the admin API (POST /drain)' },
    });
    expect(double.checks(id)[0]?.status).toBe('critical'); // told before the answer
    for (let i = 0; i < 5; i++) expect(await through()).toBe(200);
    // Probes keep running and keep reporting critical (the TTL stays fresh).
    await new Promise((r) => setTimeout(r, 500));
    expect(double.checks(id)[0]?.status).toBe('critical');
    expect(double.checks(id)[0]?.output).toMatch(/drained by the admin API/);
    expect(await call(`${mesh.admin}/drain`, 'POST')).toEqual({
      status: 200,
      body: { draining: true, shuttingDown: false },
    });

    const undone = await call(`${mesh.admin}/drain`, 'DELETE');
    expect(undone).toEqual({ status: 200, body: { draining: false, shuttingDown: false } });
    expect((await call(`${mesh.admin}/ready`, 'GET')).status).toBe(200);
    expect(double.checks(id)[0]?.status).toBe('passing');
    await new Promise((r) => setTimeout(r, 500));
    expect(double.checks(id)[0]?.status).toBe('passing');
    expect(await through()).toBe(200);
  });

  it('the mutating-call guard applies: a cross-site POST or DELETE is refused and changes nothing; GET is 405', async () => {
    const refused = await call(`${mesh.admin}/drain`, 'POST', { origin: 'http://evil.example' });
    expect(refused.status).toBe(403);
    expect((await call(`${mesh.admin}/ready`, 'GET')).status).toBe(200);
    expect((await call(`${mesh.admin}/drain`, 'DELETE', { origin: 'null' })).status).toBe(403);
    expect((await call(`${mesh.admin}/drain`, 'GET')).status).toBe(405);
  });
});

describe('POST /drain with the admin token', () => {
  it('needs `Authorization: Bearer TOKEN`', async () => {
    const mesh = await startMeshlet({
      listeners: { admin: { port: 0, token: 'drain-token-123' } },
      registry: { type: 'static', endpoints: {} },
    });
    try {
      expect((await call(`${mesh.admin}/drain`, 'POST')).status).toBe(403);
      expect((await call(`${mesh.admin}/ready`, 'GET')).status).toBe(200);
      const ok = await call(`${mesh.admin}/drain`, 'POST', { authorization: 'Bearer drain-token-123' });
      expect(ok.status).toBe(200);
      expect((await call(`${mesh.admin}/ready`, 'GET')).status).toBe(503);
      expect((await call(`${mesh.admin}/drain`, 'DELETE')).status).toBe(403);
      expect(
        (await call(`${mesh.admin}/drain`, 'DELETE', { authorization: 'Bearer drain-token-123' })).status,
      ).toBe(200);
      expect((await call(`${mesh.admin}/ready`, 'GET')).status).toBe(200);
    } finally {
      await mesh.close();
    }
  });
});

describe('GET /config and GET /', () => {
  it('shows the running config with its file and last reload, and no secret: admin token, ACL token, tokenFile contents', async () => {
    const double = new ConsulDouble();
    await double.start();
    const tokenFile = join(tempDir('meshlet-config-token-'), 'consul-token');
    writeFileSync(tokenFile, 'token-from-file-SECRET-1\n');
    const mesh = await spawnMeshlet({
      listeners: { admin: { port: 0, token: 'admin-token-SECRET-2' }, adminGrpc: { enabled: false } },
      registry: { type: 'consul', consul: { address: double.url, tokenFile } },
      upstreams: { users: { timeouts: { connect: '750ms' } } },
      shutdown: { drainDelay: 0 },
    });
    const inline = await startMeshlet({
      registry: { type: 'consul', consul: { address: double.url, token: 'inline-acl-SECRET-3' } },
      shutdown: { drainDelay: 0 },
    });
    try {
      const res = await request(`${mesh.admin}/config`);
      const text = await res.body.text();
      expect(res.statusCode).toBe(200);
      expect(text).not.toMatch(/SECRET/);
      const doc = JSON.parse(text) as {
        file: string;
        lastReload: unknown;
        redacted: string[];
        config: {
          listeners: { admin: { token: string } };
          registry: { consul: { tokenFile: string } };
          upstreams: Record<string, { timeouts: { connect: number } }>;
        };
      };
      expect(doc.file).toBe(mesh.configFile);
      expect(doc.lastReload).toBeNull();
      expect(doc.redacted).toEqual(['listeners.admin.token']);
      expect(doc.config.listeners.admin.token).toBe('[redacted]');
      expect(doc.config.registry.consul.tokenFile).toBe(tokenFile); // the path, not its contents
      expect(doc.config.upstreams.users!.timeouts.connect).toBe(750);

      const inlineText = await (await request(`${inline.admin}/config`)).body.text();
      expect(inlineText).not.toMatch(/SECRET/);
      expect(JSON.parse(inlineText).redacted).toEqual(['registry.consul.token']);

      // A reload's result shows up.
      mesh.proc.kill('SIGHUP');
      await eventually(() => mesh.stdout.some((l) => l.includes('config reloaded')), 5000, 'reloaded');
      const after = (await (await request(`${mesh.admin}/config`)).body.json()) as {
        lastReload: { result: string };
      };
      expect(after.lastReload.result).toBe('ok');
    } finally {
      mesh.proc.kill('SIGTERM');
      await mesh.exited;
      await inline.close();
      await double.stop();
    }
  });

  it('GET / lists every admin endpoint, which calls mutate, and the gRPC admin address', async () => {
    const mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'static', endpoints: {} },
    });
    try {
      const { status, body } = await call(`${mesh.admin}/`, 'GET');
      expect(status).toBe(200);
      const endpoints = body.endpoints as { method: string; path: string; mutating: boolean }[];
      expect(endpoints.map((e) => `${e.method} ${e.path}`)).toEqual(
        expect.arrayContaining([
          'GET /live',
          'GET /ready',
          'GET /metrics',
          'GET /upstreams',
          'POST /drain',
          'DELETE /drain',
          'GET /config',
        ]),
      );
      expect(endpoints.filter((e) => e.mutating).map((e) => e.method)).toEqual(['POST', 'POST', 'DELETE']);
      expect(body.grpc).toMatchObject({ address: `127.0.0.1:${mesh.daemon.addresses().adminGrpc!.port}` });
    } finally {
      await mesh.close();
    }
  });
});
