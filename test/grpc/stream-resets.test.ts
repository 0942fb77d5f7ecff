// An endpoint that resets a gRPC call's stream itself (RST_STREAM CANCEL, INTERNAL_ERROR, NO_ERROR): the caller reads gRPC's status for it, and the call is not replayed as a lost connection.
import * as http2 from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { echoClient, grpc, unary } from '../helpers/grpc.ts';
import { grpcFrame, H2_ERROR, type RawH2Server, type RawStream, startRawH2Server } from './raw-h2-server.ts';

/** Response headers of a gRPC answer. */
const HEAD: [string, string][] = [
  [':status', '200'],
  ['content-type', 'application/grpc'],
];

describe('gRPC streams reset by their endpoint', () => {
  const servers: RawH2Server[] = [];
  let mesh: InProcessMeshlet | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
    for (const s of servers.splice(0)) await s.close();
  });

  /** A raw endpoint answering every stream with `answer`. */
  async function endpoint(answer: (s: RawStream) => void): Promise<RawH2Server> {
    const raw = await startRawH2Server({ onRequest: answer });
    servers.push(raw);
    return raw;
  }
  /** An empty Echo reply, status OK. */
  const ok = (s: RawStream): void => s.conn.ok(s.id, '');

  /** meshlet over a resetting endpoint and a healthy one (round robin), with `retryOn` if given. */
  async function start(resetting: RawH2Server, healthy: RawH2Server, retryOn?: string[]): Promise<string> {
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { svc: [resetting.endpoint, healthy.endpoint] } },
      upstreams: {
        svc: {
          protocol: 'grpc',
          loadBalancer: 'round_robin',
          outlierDetection: { enabled: false },
          circuitBreaker: { enabled: false },
          ...(retryOn === undefined ? {} : { retries: { retryOn } }),
        },
      },
    });
    return new URL(mesh.outbound).host;
  }

  /** Calls until the resetting endpoint got one call (round robin: within two); returns that call's result. */
  async function callResetting(
    target: string,
    resetting: RawH2Server,
  ): Promise<Awaited<ReturnType<typeof unary>>> {
    const client = echoClient(target, 'svc');
    try {
      for (let i = 0; i < 2; i++) {
        const before = resetting.streams.length;
        const r = await unary(client, { message: 'x' });
        if (resetting.streams.length > before) return r;
      }
      throw new Error('the resetting endpoint got no call');
    } finally {
      client.close();
    }
  }

  const cases = [
    { name: 'INTERNAL_ERROR', code: H2_ERROR.INTERNAL_ERROR, status: grpc.status.INTERNAL },
    { name: 'CANCEL', code: H2_ERROR.CANCEL, status: grpc.status.CANCELLED },
    { name: 'NO_ERROR', code: H2_ERROR.NO_ERROR, status: grpc.status.INTERNAL },
  ];
  for (const c of cases) {
    it(`RST_STREAM ${c.name} before an answer: ${grpc.status[c.status]} to the caller, the call not replayed elsewhere`, async () => {
      const resetting = await endpoint((s) => s.conn.rst(s.id, c.code));
      const healthy = await endpoint(ok);
      const target = await start(resetting, healthy);
      const r = await callResetting(target, resetting);
      // Before the fix: replayed on the healthy endpoint (retryOn `unavailable` took it for a lost connection).
      expect(healthy.streams).toHaveLength(0);
      expect(r.error?.code).toBe(c.status);
      expect(r.error?.details).toBe(`endpoint ${resetting.endpoint}: stream reset (${c.name})`);
      const access = mesh!.logs.filter((l) => l.msg === 'access').at(-1)!;
      expect(access).toMatchObject({ status: 200, grpcStatus: c.status, attempts: 1 });
    });
  }

  it('RST_STREAM INTERNAL_ERROR is replayed when retryOn lists `internal`', async () => {
    const resetting = await endpoint((s) => s.conn.rst(s.id, H2_ERROR.INTERNAL_ERROR));
    const healthy = await endpoint(ok);
    const target = await start(resetting, healthy, ['connect-failure', 'refused-stream', 'internal']);
    const r = await callResetting(target, resetting);
    expect(r.error).toBeUndefined();
    expect(healthy.streams.length).toBeGreaterThan(0);
  });

  it('RST_STREAM INTERNAL_ERROR after a message: INTERNAL in trailers (not UNAVAILABLE, which clients retry)', async () => {
    const resetting = await endpoint((s) => {
      s.conn.headers(s.id, HEAD);
      s.conn.data(s.id, grpcFrame(Buffer.alloc(0)));
      setTimeout(() => s.conn.rst(s.id, H2_ERROR.INTERNAL_ERROR), 60);
    });
    const healthy = await endpoint(ok);
    const target = await start(resetting, healthy);
    const r = await callResetting(target, resetting);
    expect(healthy.streams).toHaveLength(0);
    expect(r.error?.code).toBe(grpc.status.INTERNAL);
    expect(r.error?.details).toBe(`endpoint ${resetting.endpoint}: stream reset (INTERNAL_ERROR)`);
  });

  it('a held answer reset before its status: its message reaches the caller, then INTERNAL', async () => {
    // Reset 2 ms after the message: inside the 20 ms response hold.
    const resetting = await endpoint((s) => {
      s.conn.headers(s.id, HEAD);
      s.conn.data(s.id, grpcFrame('kept'));
      setTimeout(() => s.conn.rst(s.id, H2_ERROR.INTERNAL_ERROR), 2);
    });
    const healthy = await endpoint(ok);
    await start(resetting, healthy);
    const session = http2.connect(mesh!.outbound);
    session.on('error', () => {});
    try {
      // Round robin: within two calls one reaches the resetting endpoint.
      for (let i = 0; i < 2; i++) {
        const before = resetting.streams.length;
        const answer = await new Promise<{ body: string; trailers?: http2.IncomingHttpHeaders }>(
          (resolve, reject) => {
            const s = session.request({
              ':method': 'POST',
              ':path': '/pkg.Svc/Call',
              ':authority': 'svc',
              'content-type': 'application/grpc',
              te: 'trailers',
            });
            const chunks: Buffer[] = [];
            let trailers: http2.IncomingHttpHeaders | undefined;
            s.on('data', (d: Buffer) => chunks.push(d));
            s.on('trailers', (t) => (trailers = t));
            s.on('error', reject);
            s.on('close', () => resolve({ body: Buffer.concat(chunks).subarray(5).toString(), trailers }));
            s.end(grpcFrame('req'));
          },
        );
        if (resetting.streams.length === before) continue;
        expect(answer.body).toBe('kept');
        expect(answer.trailers?.['grpc-status']).toBe(String(grpc.status.INTERNAL));
        return;
      }
      throw new Error('the resetting endpoint got no call');
    } finally {
      session.close();
    }
  });
});
