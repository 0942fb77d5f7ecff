// The gRPC admin API under hostile clients: a watcher that stops reading, too many watchers, oversized requests, and health Watch calls for ever-new names.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_WATCH_STREAMS } from '../../src/admin-grpc/watch-stream.ts';
import { type InProcessMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { adminClient, unary } from './admin-grpc-client.ts';

const GC_DAEMON = fileURLToPath(new URL('../helpers/gc-daemon.ts', import.meta.url));
const WATCH_UPSTREAMS = '/meshlet.admin.v1.Admin/WatchUpstreams';
const HEALTH_WATCH = '/grpc.health.v1.Health/Watch';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A gRPC length-prefixed message. */
function framed(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** A HealthCheckRequest `{service}` (field 1, length-delimited). */
function healthRequest(service: string): Buffer {
  const name = Buffer.from(service);
  const length: number[] = [];
  let v = name.length;
  while (v >= 128) {
    length.push((v & 127) | 128);
    v >>>= 7;
  }
  length.push(v);
  return Buffer.concat([Buffer.from([0x0a, ...length]), name]);
}

/** An endpoints file's map: `upstreams` upstreams of 5 endpoints each, their addresses naming `generation`. */
function endpointsTable(upstreams: number, generation: number): Record<string, string[]> {
  const table: Record<string, string[]> = {};
  for (let u = 0; u < upstreams; u++)
    table[`svc-${u}`] = Array.from({ length: 5 }, (_, e) => `10.${generation}.${u}.${e + 1}:${8000 + e}`);
  return table;
}

/** One call over a raw h2c session: `path` with one request message; its messages are split as they come. */
interface RawCall {
  readonly stream: http2.ClientHttp2Stream;
  readonly messages: Buffer[];
  /** `grpc-status` from the response headers (trailers-only) or trailers, once known. */
  status: string | undefined;
  /** Resolves once `count` messages arrived, or the call ended (false) or `ms` passed (false). */
  received(count: number, ms?: number): Promise<boolean>;
  /** Resolves once the call closed, or `ms` passed. */
  closed(ms?: number): Promise<void>;
}

function rawCall(session: http2.ClientHttp2Session, path: string, request: Buffer): RawCall {
  const stream = session.request({
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  const call: RawCall = {
    stream,
    messages: [],
    status: undefined,
    received: (count, ms = 5000) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => done(false), ms);
        const look = (): void => {
          if (call.messages.length >= count) done(true);
        };
        const done = (ok: boolean): void => {
          clearTimeout(timer);
          stream.off('data', look);
          stream.off('close', end);
          resolve(ok);
        };
        const end = (): void => done(call.messages.length >= count);
        stream.on('data', look);
        stream.on('close', end);
        setImmediate(look);
      }),
    closed: (ms = 5000) =>
      new Promise((resolve) => {
        if (stream.closed) return resolve();
        const timer = setTimeout(resolve, ms);
        stream.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
  let pending = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const size = pending.readUInt32BE(1);
      call.messages.push(pending.subarray(5, 5 + size));
      pending = pending.subarray(5 + size);
    }
  });
  stream.on('response', (h) => {
    if (h['grpc-status'] !== undefined) call.status = String(h['grpc-status']);
  });
  stream.on('trailers', (t) => (call.status = String(t['grpc-status'])));
  stream.end(framed(request));
  return call;
}

function connectH2(port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  return session;
}

describe('gRPC admin API: watchers', () => {
  let mesh: InProcessMeshlet;
  let endpointsFile: string;
  let port: number;

  beforeAll(async () => {
    endpointsFile = writeConfig(endpointsTable(100, 0) as never, 'endpoints.yaml');
    mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'static', file: endpointsFile },
      accessLog: { enabled: false },
    });
    port = mesh.daemon.addresses().adminGrpc!.port;
  });
  afterAll(async () => {
    await mesh?.close();
  });

  it('a WatchUpstreams reader that stopped reading gets the latest snapshot when it resumes, not each one it missed', async () => {
    const session = connectH2(port);
    try {
      const watch = rawCall(session, WATCH_UPSTREAMS, Buffer.alloc(0));
      expect(await watch.received(1)).toBe(true);
      // A snapshot of 500 endpoints is larger than the reader's 64 KiB stream window: once it stops
      // reading, meshlet cannot send it more.
      watch.stream.pause();
      const EDITS = 25;
      for (let g = 1; g <= EDITS; g++) {
        writeFileSync(endpointsFile, stringify(endpointsTable(100, g)));
        await sleep(80);
      }
      await sleep(300);
      watch.stream.resume();
      const last = Buffer.from(`10.${EDITS}.99.5:8004`);
      const deadline = Date.now() + 5000;
      while (!(watch.messages.at(-1)?.includes(last) ?? false) && Date.now() < deadline) await sleep(20);
      await sleep(300);
      expect(watch.messages.at(-1)!.includes(last)).toBe(true);
      // The first, the few the reader's 64 KiB stream window took before it stopped (49 KB each),
      // the one on its way, the latest: never one per edit (all 26 were queued, 1.3 MB).
      expect(watch.messages.length).toBeLessThanOrEqual(6);
    } finally {
      session.destroy();
    }
  });

  it.each([
    ['WatchUpstreams', WATCH_UPSTREAMS, Buffer.alloc(0)],
    ['health Watch', HEALTH_WATCH, healthRequest('')],
  ])(
    `%s: stream ${MAX_WATCH_STREAMS + 1} is refused with RESOURCE_EXHAUSTED, and a slot frees when one ends`,
    async (_what, path, request) => {
      const sessions = [connectH2(port), connectH2(port)];
      try {
        const open = Array.from({ length: MAX_WATCH_STREAMS }, (_, i) =>
          rawCall(sessions[i % 2]!, path, request),
        );
        const first = await Promise.all(open.map((c) => c.received(1)));
        expect(first.every(Boolean)).toBe(true);
        const extra = rawCall(sessions[0]!, path, request);
        await extra.closed();
        expect({ status: extra.status, messages: extra.messages.length }).toEqual({
          status: String(grpc.status.RESOURCE_EXHAUSTED),
          messages: 0,
        });
        // The first ends (the client cancels): its slot goes to the next caller.
        open[0]!.stream.close(http2.constants.NGHTTP2_CANCEL);
        await open[0]!.closed();
        await sleep(100);
        const next = rawCall(sessions[1]!, path, request);
        expect(await next.received(1)).toBe(true);
        expect(next.status).toBeUndefined();
      } finally {
        for (const s of sessions) s.destroy();
      }
    },
    15_000,
  );

  it('a health Watch of an unknown service gets SERVICE_UNKNOWN and stays open', async () => {
    const session = connectH2(port);
    try {
      const watch = rawCall(session, HEALTH_WATCH, healthRequest('no.such.Service'));
      expect(await watch.received(1)).toBe(true);
      // HealthCheckResponse {status: SERVICE_UNKNOWN (3)}
      expect(watch.messages[0]).toEqual(Buffer.from([0x08, 0x03]));
      await sleep(200);
      expect(watch.stream.closed).toBe(false);
    } finally {
      session.destroy();
    }
  });

  it('a request larger than 16 KiB is refused with RESOURCE_EXHAUSTED, not read', async () => {
    const client = adminClient(`127.0.0.1:${port}`);
    try {
      await expect(unary(client, 'GetUpstream', { name: 'x'.repeat(1024 * 1024) })).rejects.toMatchObject({
        code: grpc.status.RESOURCE_EXHAUSTED,
      });
      // A normal one still answers.
      await expect(unary(client, 'GetUpstream', { name: 'svc-1' })).resolves.toMatchObject({ name: 'svc-1' });
    } finally {
      client.close();
    }
  });
});

describe('gRPC admin API: calls that come and go (a meshlet process)', () => {
  it('health Watch calls for ever-new service names, and WatchUpstreams calls cancelled or cut, leave nothing behind', async () => {
    const file = writeConfig({
      listeners: { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { port: 0 } },
      registry: { type: 'static', endpoints: { users: ['127.0.0.1:9'] } },
      accessLog: { enabled: false },
    });
    // The daemon entry `meshlet run` re-execs, with a SIGUSR2 → full GC hook for measuring.
    const proc = spawn(
      process.execPath,
      ['--expose-gc', GC_DAEMON, '--config', file, '--log-level', 'info'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    try {
      const ports = await new Promise<{ admin: number; grpc: number }>((resolve, reject) => {
        let text = '';
        const timer = setTimeout(() => reject(new Error('meshlet did not start')), 15_000);
        proc.stdout!.on('data', (d: Buffer) => {
          text += d.toString();
          const admin = /"admin":\{"address":"[^"]+","port":(\d+)/.exec(text);
          const grpcPort = /"adminGrpc":\{"address":"[^"]+","port":(\d+)/.exec(text);
          if (admin !== null && grpcPort !== null) {
            clearTimeout(timer);
            resolve({ admin: Number(admin[1]), grpc: Number(grpcPort[1]) });
          }
        });
        proc.once('exit', (code) => reject(new Error(`daemon exited with ${code}`)));
      });
      /** V8 heap in use after two full collections, bytes (meshlet's own metric). */
      const heapUsed = async (): Promise<number> => {
        for (let i = 0; i < 2; i++) {
          proc.kill('SIGUSR2');
          await sleep(300);
        }
        const text = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text();
        return Number(/^meshlet_nodejs_heap_size_used_bytes (\S+)/m.exec(text)![1]);
      };
      let n = 0;
      /** A health Watch for a new 15 KiB name on its own connection, closed after its first status. */
      const healthCycle = async (): Promise<void> => {
        const session = connectH2(ports.grpc);
        const call = rawCall(session, HEALTH_WATCH, healthRequest(`${n++}-`.padEnd(15 * 1024, 'x')));
        await call.received(1);
        session.destroy();
      };
      /** WatchUpstreams calls on one connection, each cancelled after its first snapshot; then the connection cut mid-stream. */
      const upstreamsCycles = async (count: number): Promise<void> => {
        const session = connectH2(ports.grpc);
        for (let i = 0; i < count; i++) {
          const call = rawCall(session, WATCH_UPSTREAMS, Buffer.alloc(0));
          await call.received(1);
          if (i < count - 1) {
            call.stream.close(http2.constants.NGHTTP2_CANCEL);
            await call.closed();
          }
        }
        session.destroy();
      };
      // Warm-up: grpc-js loads on the first connection; the heap grows to its working size.
      for (let i = 0; i < 200; i++) await healthCycle();
      await upstreamsCycles(100);
      const before = await heapUsed();
      // 600 names × 15 KiB: the library kept each name (about 9 MiB).
      for (let i = 0; i < 600; i++) await healthCycle();
      for (let i = 0; i < 2; i++) await upstreamsCycles(100);
      const after = await heapUsed();
      expect(after - before).toBeLessThan(3 * 1024 * 1024);
    } finally {
      proc.kill('SIGKILL');
    }
  }, 60_000);
});
