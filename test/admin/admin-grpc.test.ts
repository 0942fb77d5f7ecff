// The gRPC admin API: reflection lists it, WatchUpstreams sees an endpoints-file edit within 100 ms, ResetBreaker closes a breaker, health follows /ready.
import { writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { request } from 'undici';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, spawnMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { adminClient, type AdminStub, healthClient, reflect, unary } from './admin-grpc-client.ts';

const RECORD_MODULES = fileURLToPath(new URL('../helpers/record-modules.ts', import.meta.url));

type Snapshot = {
  upstreams: { name: string; endpoints: { id: string; state: string }[]; circuitBreaker: string }[];
};

function targetOf(mesh: InProcessMeshlet): string {
  return `127.0.0.1:${mesh.daemon.addresses().adminGrpc!.port}`;
}

describe('gRPC admin API', () => {
  let users: TestUpstream;
  let failing: TestUpstream;
  let mesh: InProcessMeshlet;
  let endpointsFile: string;
  let client: AdminStub;

  beforeAll(async () => {
    users = await startUpstream();
    failing = await startUpstream((req, res) => {
      req.resume();
      res.statusCode = 500;
      res.end();
    });
    endpointsFile = writeConfig({ users: [users.endpoint] } as never, 'endpoints.yaml');
    mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'static', file: endpointsFile, endpoints: { orders: [failing.endpoint] } },
      upstreams: {
        orders: { retries: { attempts: 1 }, circuitBreaker: { volumeThreshold: 3, resetTimeout: '1m' } },
      },
      accessLog: { enabled: false },
    });
    client = adminClient(targetOf(mesh));
  });
  afterAll(async () => {
    client?.close();
    await mesh?.close();
    await users?.close();
    await failing?.close();
  });

  it('reflection lists meshlet.admin.v1.Admin and grpc.health.v1.Health, and serves their descriptors (no proto files needed)', async () => {
    const { services, descriptorBytes } = await reflect(targetOf(mesh), 'meshlet.admin.v1.Admin');
    expect(services).toContain('meshlet.admin.v1.Admin');
    expect(services).toContain('grpc.health.v1.Health');
    expect(descriptorBytes).toBeGreaterThan(500);
    // GET / says where it is.
    const index = (await (await request(`${mesh.admin}/`)).body.json()) as { grpc: { address: string } };
    expect(index.grpc.address).toBe(targetOf(mesh));
  });

  it('ListUpstreams and GetUpstream answer what GET /upstreams shows; an unknown name is NOT_FOUND', async () => {
    const list = await unary<Snapshot & { registryJson: string }>(client, 'ListUpstreams', {});
    expect(list.upstreams.map((u) => u.name)).toEqual(['orders', 'users']);
    expect(JSON.parse(list.registryJson).type).toBe('static');
    const one = await unary<Snapshot['upstreams'][number]>(client, 'GetUpstream', { name: 'users' });
    expect(one.endpoints.map((e) => e.id)).toEqual([users.endpoint]);
    await expect(unary(client, 'GetUpstream', { name: 'nope' })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
  });

  it('WatchUpstreams delivers a snapshot within 100 ms of an endpoints-file edit', async () => {
    const other = await startUpstream();
    const call = client.WatchUpstreams!({}) as grpc.ClientReadableStream<Snapshot>;
    const snapshots: { at: number; s: Snapshot }[] = [];
    const waiters: (() => void)[] = [];
    call.on('data', (s: Snapshot) => {
      snapshots.push({ at: performance.now(), s });
      for (const w of waiters.splice(0)) w();
    });
    call.on('error', () => {});
    const next = (count: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no snapshot #${count} within 3 s`)), 3000);
        const look = () =>
          snapshots.length >= count ? (clearTimeout(timer), resolve()) : waiters.push(look);
        look();
      });
    const ids = (i: number) =>
      snapshots[i]!.s.upstreams.find((u) => u.name === 'users')!.endpoints.map((e) => e.id);
    try {
      await next(1); // the snapshot on subscribe
      expect(ids(0)).toEqual([users.endpoint]);
      // The first edit loads the config loader (zod, yaml) into the daemon; the second is timed.
      writeFileSync(endpointsFile, stringify({ users: [users.endpoint, other.endpoint] }));
      await next(2);
      expect(ids(1)).toEqual([users.endpoint, other.endpoint]);
      const editedAt = performance.now();
      writeFileSync(endpointsFile, stringify({ users: [other.endpoint] }));
      await next(3);
      expect(ids(2)).toEqual([other.endpoint]);
      expect(snapshots[2]!.at - editedAt).toBeLessThan(100);
      // Requests alone (counters) do not make snapshots.
      for (let i = 0; i < 5; i++)
        await (await request(`${mesh.outbound}/`, { headers: { host: 'users' } })).body.dump();
      await new Promise((r) => setTimeout(r, 100));
      expect(snapshots).toHaveLength(3);
    } finally {
      call.cancel();
      await other.close();
    }
  });

  it('ResetBreaker closes an open breaker (and the watch sees it open, then closed)', async () => {
    for (let i = 0; i < 5; i++)
      await (await request(`${mesh.outbound}/`, { headers: { host: 'orders' } })).body.dump();
    const before = await unary<Snapshot['upstreams'][number]>(client, 'GetUpstream', { name: 'orders' });
    expect(before.circuitBreaker).toBe('open');
    const reset = await unary<{ upstream: string; circuitBreaker: string }>(client, 'ResetBreaker', {
      upstream: 'orders',
    });
    expect(reset).toEqual({ upstream: 'orders', circuitBreaker: 'closed' });
    const http = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
      upstreams: Record<string, { circuitBreaker: string }>;
    };
    expect(http.upstreams.orders!.circuitBreaker).toBe('closed');
    await expect(unary(client, 'ResetBreaker', { upstream: 'nope' })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
  });

  it('Health Check says SERVING only when /ready is 200; Watch streams the flip on Drain and back', async () => {
    const health = healthClient(targetOf(mesh));
    try {
      expect(await unary<{ status: string }>(health, 'Check', { service: '' })).toEqual({
        status: 'SERVING',
      });
      expect((await request(`${mesh.admin}/ready`)).statusCode).toBe(200);
      const call = health.Watch!({ service: '' }) as grpc.ClientReadableStream<{ status: string }>;
      const seen: { at: number; status: string }[] = [];
      call.on('data', (m: { status: string }) => seen.push({ at: performance.now(), status: m.status }));
      call.on('error', () => {});
      await new Promise((r) => setTimeout(r, 100));
      const drainedAt = performance.now();
      expect(await unary(client, 'Drain', {})).toEqual({ draining: true, shuttingDown: false });
      expect((await request(`${mesh.admin}/ready`)).statusCode).toBe(503);
      expect(await unary<{ status: string }>(health, 'Check', { service: '' })).toEqual({
        status: 'NOT_SERVING',
      });
      await new Promise((r) => setTimeout(r, 100));
      expect(await unary(client, 'Drain', { undo: true })).toEqual({ draining: false, shuttingDown: false });
      expect((await request(`${mesh.admin}/ready`)).statusCode).toBe(200);
      expect(await unary<{ status: string }>(health, 'Check', { service: '' })).toEqual({
        status: 'SERVING',
      });
      await new Promise((r) => setTimeout(r, 100));
      call.cancel();
      expect(seen.map((s) => s.status)).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
      expect(seen[1]!.at - drainedAt).toBeLessThan(100);
    } finally {
      health.close();
    }
  });

  it('GetConfig answers the redacted config', async () => {
    const answer = await unary<{ configJson: string; lastReloadResult: string }>(client, 'GetConfig', {});
    const doc = JSON.parse(answer.configJson) as { config: { listeners: { adminGrpc: { port: number } } } };
    expect(doc.config.listeners.adminGrpc.port).toBe(0);
    expect(answer.lastReloadResult).toBe('');
  });
});

describe('gRPC health before the registry syncs', () => {
  it('NOT_SERVING while /ready is 503 (Consul not reached), SERVING once it syncs', async () => {
    const port = await closedPort();
    const mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'consul', consul: { address: `http://127.0.0.1:${port}` } },
      upstreams: { users: {} },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    const health = healthClient(targetOf(mesh));
    const double = new ConsulDouble();
    try {
      expect((await request(`${mesh.admin}/ready`)).statusCode).toBe(503);
      expect(await unary<{ status: string }>(health, 'Check', { service: '' })).toEqual({
        status: 'NOT_SERVING',
      });
      await double.start({ port });
      double.addInstance({ service: 'users', id: 'users-1', port: 9 });
      const started = performance.now();
      while ((await request(`${mesh.admin}/ready`)).statusCode !== 200) {
        if (performance.now() - started > 8000) throw new Error('not ready within 8 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(await unary<{ status: string }>(health, 'Check', { service: '' })).toEqual({
        status: 'SERVING',
      });
    } finally {
      health.close();
      await mesh.close();
      await double.stop();
    }
  });
});

describe('gRPC admin API: the token rule, and off', () => {
  it('with listeners.admin.token, Drain needs `authorization: Bearer TOKEN`', async () => {
    const mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 }, admin: { port: 0, token: 'grpc-admin-token' } },
      registry: { type: 'static', endpoints: {} },
    });
    const client = adminClient(targetOf(mesh));
    try {
      await expect(unary(client, 'Drain', {})).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      expect((await request(`${mesh.admin}/ready`)).statusCode).toBe(200);
      const md = new grpc.Metadata();
      md.set('authorization', 'Bearer grpc-admin-token');
      expect(await unary(client, 'Drain', {}, md)).toEqual({ draining: true, shuttingDown: false });
      expect((await request(`${mesh.admin}/ready`)).statusCode).toBe(503);
    } finally {
      client.close();
      await mesh.close();
    }
  });

  it('enabled: false: nothing listens and the daemon never loads grpc-js; GET / says grpc null', async () => {
    const log = writeConfig('', 'modules.log');
    process.env.MESHLET_TEST_MODULE_LOG = log;
    process.env.NODE_OPTIONS = `--import ${RECORD_MODULES}`;
    let off;
    let on;
    try {
      off = await spawnMeshlet({
        listeners: { adminGrpc: { enabled: false } },
        registry: { type: 'static', endpoints: {} },
      });
    } finally {
      delete process.env.NODE_OPTIONS;
      delete process.env.MESHLET_TEST_MODULE_LOG;
    }
    try {
      const index = (await (await request(`${off.admin}/`)).body.json()) as { grpc: unknown };
      expect(index.grpc).toBeNull();
      expect(off.stdout.join('\n')).not.toMatch(/adminGrpc/);
      const loaded = readFileSync(log, 'utf8');
      expect(loaded).toMatch(/daemon\.(ts|js)\n/);
      expect(loaded).not.toMatch(/@grpc|admin-grpc/);
      // The same daemon with it on does load it (the recorder would have seen it).
      on = await spawnMeshlet({
        listeners: { adminGrpc: { port: 0 } },
        registry: { type: 'static', endpoints: {} },
      });
      const onIndex = (await (await request(`${on.admin}/`)).body.json()) as {
        grpc: { address: string } | null;
      };
      expect(onIndex.grpc?.address).toMatch(/^127\.0\.0\.1:\d+$/);
    } finally {
      for (const m of [off, on]) {
        if (m === undefined) continue;
        m.proc.kill('SIGTERM');
        await m.exited;
      }
    }
  });
});
