// The peer meshlet's inbound side (A → mTLS → B → app) counts and logs each gRPC call by its grpc-status, as the caller's meshlet does.
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import {
  echoClient,
  type EchoReply,
  type EchoServer,
  type EchoStub,
  grpc,
  startEchoServer,
  unary,
} from '../helpers/grpc.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { grpcFrame, H2_ERROR, type RawH2Server, type RawStream, startRawH2Server } from './raw-h2-server.ts';

let pki: TestPki;
/** A real grpc-js Echo server behind B (`orders`). */
let echo: EchoServer;
/** A frame-level app behind B2 (`resets`): each test decides its answer. */
let raw: RawH2Server;
let b: InProcessMeshlet;
let b2: InProcessMeshlet;
let a: InProcessMeshlet;
let orders: EchoStub;
let resets: EchoStub;
/** How the frame-level app answers the next stream. */
let answer: (s: RawStream) => void = (s) => s.conn.ok(s.id, '');

beforeAll(async () => {
  pki = await makePki();
  echo = await startEchoServer('orders-app');
  raw = await startRawH2Server({ onRequest: (s) => answer(s) });
  b = await startMeshlet({
    service: { name: 'orders', port: echo.port, protocol: 'grpc' },
    listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
    tls: await tlsFilesConfig(pki, 'orders'),
  });
  b2 = await startMeshlet({
    service: { name: 'resets', port: Number(raw.endpoint.split(':')[1]), protocol: 'grpc' },
    listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
    tls: await tlsFilesConfig(pki, 'resets'),
  });
  // No retries of a status and no ejection: each call reaches the app once, whatever it answers.
  const once = {
    protocol: 'grpc' as const,
    outlierDetection: { enabled: false },
    retries: { retryOn: ['connect-failure' as const, 'refused-stream' as const] },
  };
  a = await startMeshlet({
    tls: await tlsFilesConfig(pki, 'web'),
    registry: { type: 'static', endpoints: { orders: [peerEndpoint(b)], resets: [peerEndpoint(b2)] } },
    upstreams: { orders: once, resets: once },
  });
  orders = echoClient(new URL(a.outbound).host, 'orders');
  resets = echoClient(new URL(a.outbound).host, 'resets');
}, 30_000);
afterAll(async () => {
  orders?.close();
  resets?.close();
  await a?.close();
  await b?.close();
  await b2?.close();
  echo?.close();
  await raw?.close();
});

type Line = Record<string, unknown>;

/** The access lines of `m` in `direction`. */
function accessOf(m: InProcessMeshlet, direction: 'inbound' | 'outbound'): Line[] {
  return m.logs.filter((l) => l.msg === 'access' && l.direction === direction);
}

/** Runs `call`, then waits (≤ 2 s) for A's outbound and `peer`'s inbound access line of it. */
async function logged(peer: InProcessMeshlet, call: () => Promise<unknown>): Promise<{ a: Line; b: Line }> {
  const aBefore = accessOf(a, 'outbound').length;
  const bBefore = accessOf(peer, 'inbound').length;
  await call();
  const deadline = Date.now() + 2000;
  while (accessOf(a, 'outbound').length === aBefore || accessOf(peer, 'inbound').length === bBefore) {
    if (Date.now() > deadline) throw new Error('no access line within 2 s');
    await new Promise((r) => setTimeout(r, 10));
  }
  return { a: accessOf(a, 'outbound').at(-1)!, b: accessOf(peer, 'inbound').at(-1)! };
}

/** `meshlet_grpc_requests_total` of `m`, by `direction`, upstream and code (0 when absent). */
async function grpcCount(
  m: InProcessMeshlet,
  direction: string,
  upstream: string,
  code: string,
): Promise<number> {
  const text = await (await request(`${m.admin}/metrics`)).body.text();
  const series = `meshlet_grpc_requests_total{direction="${direction}",upstream="${upstream}",grpc_code="${code}"}`;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/**
 * Runs one call through A and B and checks both sides: B's inbound access line carries
 * `grpcStatus` (and `status`, `peerStatus`: 200 unless B answered itself), B counts the call under `direction="inbound"`, and A's outbound line
 * and count say the same status.
 */
async function expectBoth(
  peer: InProcessMeshlet,
  upstream: string,
  code: number,
  call: () => Promise<unknown>,
  peerStatus = 200,
): Promise<void> {
  const name = grpc.status[code]!;
  const inBefore = await grpcCount(peer, 'inbound', upstream, name);
  const outBefore = await grpcCount(a, 'outbound', upstream, name);
  const lines = await logged(peer, call);
  expect(lines.b).toMatchObject({ direction: 'inbound', upstream, status: peerStatus, grpcStatus: code });
  expect(lines.a).toMatchObject({ upstream, status: 200, grpcStatus: code, attempts: 1 });
  expect(await grpcCount(peer, 'inbound', upstream, name)).toBe(inBefore + 1);
  expect(await grpcCount(a, 'outbound', upstream, name)).toBe(outBefore + 1);
}

/** Calls ServerStream for `count` replies ending with `failCode`; resolves with the final status. */
function serverStream(
  count: number,
  failCode: number,
): Promise<{ replies: number; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    let replies = 0;
    const call = orders.ServerStream({
      message: 's',
      count,
      failCode,
    }) as grpc.ClientReadableStream<EchoReply>;
    call.on('data', () => replies++);
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => resolve({ replies, status }));
  });
}

describe('the inbound side counts and logs gRPC calls by grpc-status (grpc-js app)', () => {
  it('OK (status in trailers after the reply)', async () => {
    await expectBoth(b, 'orders', grpc.status.OK, async () => {
      const r = await unary(orders, { message: 'hi' });
      expect(r.reply?.message).toBe('hi');
    });
  });

  it('NOT_FOUND in trailers after a message (HTTP 200 all the way)', async () => {
    await expectBoth(b, 'orders', grpc.status.NOT_FOUND, async () => {
      const r = await serverStream(2, grpc.status.NOT_FOUND);
      expect(r.replies).toBe(2);
      expect(r.status.code).toBe(grpc.status.NOT_FOUND);
    });
  });

  it('UNAVAILABLE as a Trailers-Only answer (grpc-status in the response headers)', async () => {
    await expectBoth(b, 'orders', grpc.status.UNAVAILABLE, async () => {
      const r = await unary(orders, { message: 'x', failCode: grpc.status.UNAVAILABLE });
      expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(r.error?.details).toBe(`failed with ${grpc.status.UNAVAILABLE}`);
    });
  });
});

describe('the inbound side counts and logs gRPC calls by grpc-status (frame-level app)', () => {
  it('the app resets the stream (CANCEL) before answering: CANCELLED', async () => {
    answer = (s) => s.conn.rst(s.id, H2_ERROR.CANCEL);
    await expectBoth(b2, 'resets', grpc.status.CANCELLED, async () => {
      const r = await unary(resets, { message: 'x' });
      expect(r.error?.code).toBe(grpc.status.CANCELLED);
    });
  });

  it('the app resets the stream (INTERNAL_ERROR) after its message: INTERNAL in trailers', async () => {
    answer = (s) => {
      s.conn.headers(s.id, [
        [':status', '200'],
        ['content-type', 'application/grpc'],
      ]);
      s.conn.data(s.id, grpcFrame(''));
      setTimeout(() => s.conn.rst(s.id, H2_ERROR.INTERNAL_ERROR), 60);
    };
    await expectBoth(b2, 'resets', grpc.status.INTERNAL, async () => {
      const r = await unary(resets, { message: 'x' });
      expect(r.error?.code).toBe(grpc.status.INTERNAL);
    });
  });

  it('the app ends its answer without any grpc-status: INTERNAL, as gRPC clients read it', async () => {
    answer = (s) => {
      s.conn.headers(s.id, [
        [':status', '200'],
        ['content-type', 'application/grpc'],
      ]);
      s.conn.data(s.id, grpcFrame(''), true);
    };
    await expectBoth(b2, 'resets', grpc.status.INTERNAL, async () => {
      const r = await unary(resets, { message: 'x' });
      expect(r.error?.code).toBe(grpc.status.INTERNAL);
    });
  });

  it("B's own answer to a gRPC call (the app's connection lost: 502 upstream_unreachable) is UNAVAILABLE", async () => {
    // B answers itself, a gRPC answer (HTTP 200, UNAVAILABLE); A, told not to retry it, passes it on.
    answer = (s) => s.conn.socket.destroy();
    await expectBoth(
      b2,
      'resets',
      grpc.status.UNAVAILABLE,
      async () => {
        const r = await unary(resets, { message: 'x' });
        expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
      },
      502,
    );
    expect(accessOf(b2, 'inbound').at(-1)).toMatchObject({ error: 'upstream_unreachable' });
  });
});

/** One gRPC call straight to B's inbound listener over HTTP/2 mTLS as `service`; its response headers. */
async function directCall(
  service: string,
  extra: http2.OutgoingHttpHeaders = {},
): Promise<http2.IncomingHttpHeaders> {
  const leaf = await pki.issue(service);
  const session = http2.connect(`https://127.0.0.1:${b.daemon.addresses().inbound!.port}`, {
    ca: readFileSync(pki.caFile),
    cert: leaf.certPem,
    key: leaf.keyPem,
    checkServerIdentity: () => undefined,
  });
  session.on('error', () => {});
  try {
    const stream = session.request({
      ':method': 'POST',
      ':path': '/meshlet.test.v1.Echo/Unary',
      'content-type': 'application/grpc',
      te: 'trailers',
      ...extra,
    });
    stream.on('error', () => {});
    stream.end(grpcFrame(''));
    return await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      stream.on('response', resolve);
      stream.on('close', () => reject(new Error('stream closed without an answer')));
    });
  } finally {
    session.close();
  }
}

describe("the inbound side's own refusals of gRPC calls", () => {
  it("the handler's: a caller not allowed, 403 forbidden as PERMISSION_DENIED, logged and counted so", async () => {
    const before = await grpcCount(b, 'inbound', 'orders', 'PERMISSION_DENIED');
    const lines = accessOf(b, 'inbound').length;
    const headers = await directCall('intruder');
    expect(headers['grpc-status']).toBe(String(grpc.status.PERMISSION_DENIED));
    expect(accessOf(b, 'inbound').length).toBe(lines + 1);
    expect(accessOf(b, 'inbound').at(-1)).toMatchObject({
      status: 403,
      error: 'forbidden',
      grpcStatus: grpc.status.PERMISSION_DENIED,
    });
    expect(await grpcCount(b, 'inbound', 'orders', 'PERMISSION_DENIED')).toBe(before + 1);
  });

  it("the listener's: a header block over maxHeaderSize, 400 bad_request as INTERNAL, logged and counted so", async () => {
    const before = await grpcCount(b, 'inbound', 'orders', 'INTERNAL');
    const lines = accessOf(b, 'inbound').length;
    const headers = await directCall('web', { 'x-big': 'a'.repeat(20 * 1024) });
    expect(headers['grpc-status']).toBe(String(grpc.status.INTERNAL));
    expect(accessOf(b, 'inbound').length).toBe(lines + 1);
    expect(accessOf(b, 'inbound').at(-1)).toMatchObject({
      status: 400,
      error: 'bad_request',
      grpcStatus: grpc.status.INTERNAL,
    });
    expect(await grpcCount(b, 'inbound', 'orders', 'INTERNAL')).toBe(before + 1);
  });
});
