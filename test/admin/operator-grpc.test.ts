// Hostile calls to the gRPC admin API: unknown names of any size are NOT_FOUND, and streams left open do not hold up shutdown.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { adminClient, type AdminStub, healthClient, unary } from './admin-grpc-client.ts';

function targetOf(mesh: InProcessMeshlet): string {
  return `127.0.0.1:${mesh.daemon.addresses().adminGrpc!.port}`;
}

async function codeOf(call: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await call;
    return { code: grpc.status.OK, details: '' };
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
}

describe('gRPC admin API under hostile calls', () => {
  let mesh: InProcessMeshlet;
  let client: AdminStub;

  beforeAll(async () => {
    mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'static', endpoints: { users: ['127.0.0.1:9'] } },
      accessLog: { enabled: false },
    });
    client = adminClient(targetOf(mesh));
  });
  afterAll(async () => {
    client?.close();
    await mesh?.close();
  });

  it('an unknown upstream name of 15,000 characters is NOT_FOUND (its echo cut short), for GetUpstream and ResetBreaker', async () => {
    // Just under the admin API's 16 KiB request limit (a larger request is RESOURCE_EXHAUSTED: admin-grpc-hostile.test.ts).
    const huge = 'x'.repeat(15_000);
    for (const [method, req] of [
      ['GetUpstream', { name: huge }],
      ['ResetBreaker', { upstream: huge }],
    ] as const) {
      const { code, details } = await codeOf(unary(client, method, req));
      expect([method, code]).toEqual([method, grpc.status.NOT_FOUND]);
      expect(details.length).toBeLessThan(300);
      expect(details).toMatch(/^no upstream x+… \(15000 characters\)$/);
    }
    // The channel is still good.
    const ok = await unary<{ name: string }>(client, 'GetUpstream', { name: 'users' });
    expect(ok.name).toBe('users');
  });

  it('an empty or prototype-named upstream is NOT_FOUND, not an error', async () => {
    for (const name of ['', '__proto__', 'constructor', 'toString']) {
      expect((await codeOf(unary(client, 'ResetBreaker', { upstream: name }))).code).toBe(
        grpc.status.NOT_FOUND,
      );
      expect((await codeOf(unary(client, 'GetUpstream', { name }))).code).toBe(grpc.status.NOT_FOUND);
    }
  });
});

describe('gRPC admin streams open at shutdown', () => {
  it('a Health Watch and a WatchUpstreams left open end (NOT_SERVING first, even with no drain delay) and do not hold the shutdown up', async () => {
    const mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'static', endpoints: { users: ['127.0.0.1:9'] } },
      accessLog: { enabled: false },
      shutdown: { drainTimeout: '10s', drainDelay: 0 },
    });
    const health = healthClient(targetOf(mesh));
    const admin = adminClient(targetOf(mesh));
    const statuses: string[] = [];
    const watch = health.Watch!({ service: '' }) as grpc.ClientReadableStream<{ status: string }>;
    watch.on('data', (d: { status: string }) => statuses.push(d.status));
    const healthEnded = new Promise<void>((r) => {
      watch.on('error', () => r());
      watch.on('end', () => r());
    });
    const upstreams = admin.WatchUpstreams!({}) as grpc.ClientReadableStream<unknown>;
    let snapshots = 0;
    upstreams.on('data', () => snapshots++);
    const upstreamsEnded = new Promise<void>((r) => {
      upstreams.on('error', () => r());
      upstreams.on('end', () => r());
    });
    try {
      const t0 = performance.now();
      while (statuses.length === 0 || snapshots === 0) {
        if (performance.now() - t0 > 3000) throw new Error('no first message on the watches');
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(statuses).toEqual(['SERVING']);
      const started = performance.now();
      await mesh.close();
      await Promise.all([healthEnded, upstreamsEnded]);
      // Well under drainTimeout: nothing waited for the streams.
      expect(performance.now() - started).toBeLessThan(5000);
      expect(statuses).toEqual(['SERVING', 'NOT_SERVING']);
    } finally {
      health.close();
      admin.close();
    }
  });
});
