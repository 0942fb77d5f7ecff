// A gRPC app behind the peer meshlet (A → mTLS → B → app) that resets a call's stream or is lost mid-call: the caller reads the status a direct caller would, and the call is not replayed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { echoClient, type EchoStub, grpc, unary } from '../helpers/grpc.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import {
  grpcFrame,
  H2_ERROR,
  rawGrpcCall,
  type RawH2Server,
  type RawStream,
  startRawH2Server,
} from './raw-h2-server.ts';

let pki: TestPki;
let app: RawH2Server;
let b: InProcessMeshlet;
let a: InProcessMeshlet;
let client: EchoStub;
/** How the app answers the next streams (set by each test). */
let answer: (s: RawStream) => void = (s) => s.conn.ok(s.id, '');

beforeAll(async () => {
  pki = await makePki();
  app = await startRawH2Server({ onRequest: (s) => answer(s) });
  b = await startMeshlet({
    service: { name: 'orders', port: Number(app.endpoint.split(':')[1]), protocol: 'grpc' },
    listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
    tls: await tlsFilesConfig(pki, 'orders'),
  });
  // One endpoint (B), the gRPC defaults (retryOn connect-failure, refused-stream, unavailable; 3
  // attempts): a call A replays goes to B again, and the app sees it once more.
  a = await startMeshlet({
    tls: await tlsFilesConfig(pki, 'web'),
    registry: { type: 'static', endpoints: { orders: [peerEndpoint(b)] } },
    upstreams: { orders: { protocol: 'grpc', outlierDetection: { enabled: false } } },
  });
  client = echoClient(new URL(a.outbound).host, 'orders');
});
afterAll(async () => {
  client?.close();
  await a?.close();
  await b?.close();
  await app?.close();
});

/** A's access line of its last call. */
function lastOutbound(): Record<string, unknown> {
  return a.logs.filter((l) => l.msg === 'access').at(-1)!;
}

describe('gRPC calls the app behind the peer meshlet resets or loses', () => {
  const resets = [
    { name: 'CANCEL', code: H2_ERROR.CANCEL, status: grpc.status.CANCELLED },
    { name: 'INTERNAL_ERROR', code: H2_ERROR.INTERNAL_ERROR, status: grpc.status.INTERNAL },
    { name: 'ENHANCE_YOUR_CALM', code: H2_ERROR.ENHANCE_YOUR_CALM, status: grpc.status.RESOURCE_EXHAUSTED },
  ];
  for (const c of resets) {
    it(`RST_STREAM ${c.name} from the app before an answer: ${grpc.status[c.status]}, sent to the app once`, async () => {
      answer = (s) => s.conn.rst(s.id, c.code);
      const before = app.streams.length;
      const r = await unary(client, { message: 'x' });
      // Before the fix: B answered 502 upstream_unreachable (UNAVAILABLE), which A replayed twice.
      expect(r.error?.code).toBe(c.status);
      expect(r.error?.details).toBe(`endpoint orders: stream reset (${c.name})`);
      expect(app.streams.length - before).toBe(1);
      expect(lastOutbound()).toMatchObject({ status: 200, grpcStatus: c.status, attempts: 1 });
    });
  }

  it('REFUSED_STREAM from the app (not processed) is still replayed, and the call succeeds', async () => {
    let refused = false;
    answer = (s) => {
      if (refused) s.conn.ok(s.id, '');
      else {
        refused = true;
        s.conn.rst(s.id, H2_ERROR.REFUSED_STREAM);
      }
    };
    const before = app.streams.length;
    const r = await unary(client, { message: 'x' });
    expect(r.error).toBeUndefined();
    expect(app.streams.length - before).toBe(2);
    expect(lastOutbound()).toMatchObject({ grpcStatus: 0, attempts: 2 });
  });

  it('the app lost after its first message: the message, then UNAVAILABLE in trailers (not a reset read as INTERNAL)', async () => {
    answer = (s) => {
      s.conn.headers(s.id, [
        [':status', '200'],
        ['content-type', 'application/grpc'],
      ]);
      s.conn.data(s.id, grpcFrame('part'));
      // After A's 20 ms response hold: the message went on to the caller.
      setTimeout(() => s.conn.socket.destroy(), 60);
    };
    const before = app.streams.length;
    const r = await rawGrpcCall(a.outbound, 'orders');
    expect(r.body).toBe('part');
    // Before the fix: B reset the stream, and A ended the call with INTERNAL "stream reset (INTERNAL_ERROR)".
    expect(r.trailers?.['grpc-status']).toBe(String(grpc.status.UNAVAILABLE));
    expect(r.trailers?.['grpc-message']).toMatch(/^endpoint orders: connection reset/);
    expect(app.streams.length - before).toBe(1);
    expect(lastOutbound()).toMatchObject({ grpcStatus: grpc.status.UNAVAILABLE, attempts: 1 });
  });
});
