// Issue 12: client → meshlet A → h2 over mTLS (ALPN h2) → meshlet B inbound → gRPC app (h2c): all call shapes, identity enforced.
import { connect as tlsConnect } from 'node:tls';
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
import { makePki, type TestPki, tlsFilesConfig, peerEndpoint } from '../tls/tls-helpers.ts';

let pki: TestPki;
let app: EchoServer;
let b: InProcessMeshlet;
let a: InProcessMeshlet;
let stranger: InProcessMeshlet;
const clients: EchoStub[] = [];

/** A meshlet (as `service`) whose upstream `orders` is B's inbound listener over mTLS, speaking gRPC. */
async function caller(service: string): Promise<InProcessMeshlet> {
  return startMeshlet({
    tls: await tlsFilesConfig(pki, service),
    registry: {
      type: 'static',
      endpoints: {
        orders: [peerEndpoint(b)],
      },
    },
    upstreams: { orders: { protocol: 'grpc' } },
    accessLog: { enabled: false },
  });
}

function client(mesh: InProcessMeshlet): EchoStub {
  const c = echoClient(new URL(mesh.outbound).host, 'orders');
  clients.push(c);
  return c;
}

beforeAll(async () => {
  pki = await makePki();
  app = await startEchoServer('orders-app');
  b = await startMeshlet({
    service: { name: 'orders', port: app.port, protocol: 'grpc' },
    listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
    tls: await tlsFilesConfig(pki, 'orders'),
    accessLog: { enabled: false },
  });
  a = await caller('web');
  stranger = await caller('billing');
});
afterAll(async () => {
  for (const c of clients) c.close();
  await a?.close();
  await stranger?.close();
  await b?.close();
  app?.close();
});

describe('gRPC between two meshlets over mTLS', () => {
  it('unary: reply, trailing metadata, and the app saw the caller identity', async () => {
    const md = new grpc.Metadata();
    md.set('x-echo', 'across');
    const r = await unary(client(a), { message: 'hi' }, { metadata: md });
    expect(r.error).toBeUndefined();
    expect(r.reply?.message).toBe('hi');
    expect(r.trailers?.get('x-trailer')).toEqual(['across']);
    expect(app.calls.at(-1)!.metadata.get('x-meshlet-peer-identity')).toEqual(['web']);
  });

  it('server streaming, client streaming and bidi pass', async () => {
    const c = client(a);
    const stream = c.ServerStream({ message: 's', count: 500 }) as grpc.ClientReadableStream<EchoReply>;
    const got: EchoReply[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      stream.on('data', (r: EchoReply) => got.push(r));
      stream.on('status', resolve);
    });
    expect(status.code).toBe(grpc.status.OK);
    expect(got).toHaveLength(500);

    const joined = await new Promise<EchoReply>((resolve, reject) => {
      const call = c.ClientStream((err: grpc.ServiceError | null, r: EchoReply) =>
        err === null ? resolve(r) : reject(err),
      ) as grpc.ClientWritableStream<{ message: string }>;
      for (let i = 0; i < 10; i++) call.write({ message: `c${i}` });
      call.end();
    });
    expect(joined.index).toBe(10);

    const bidi = c.Bidi() as grpc.ClientDuplexStream<{ message: string }, EchoReply>;
    const echoed: string[] = [];
    const bidiStatus = await new Promise<grpc.StatusObject>((resolve) => {
      bidi.on('data', (r: EchoReply) => {
        echoed.push(r.message);
        if (echoed.length < 10) bidi.write({ message: `d${echoed.length}` });
        else bidi.end();
      });
      bidi.on('status', resolve);
      bidi.write({ message: 'd0' });
    });
    expect(bidiStatus.code).toBe(grpc.status.OK);
    expect(echoed).toHaveLength(10);
  });

  it('a caller not allowed gets grpc-status 7 PERMISSION_DENIED; the app sees nothing', async () => {
    const before = app.calls.length;
    const r = await unary(client(stranger), { message: 'let me in' });
    expect(r.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.trailers?.get('x-meshlet-error')).toEqual(['forbidden']);
    expect(app.calls.length).toBe(before);
  });

  it("B's inbound listener negotiates h2 by ALPN, and still serves HTTP/1.1 to an http/1.1-only peer", async () => {
    const port = b.daemon.addresses().inbound!.port;
    const web = await pki.issue('web');
    for (const [offer, expected] of [
      [['h2', 'http/1.1'], 'h2'],
      [['http/1.1'], 'http/1.1'],
    ] as const) {
      const negotiated = await new Promise<string | false | null>((resolve, reject) => {
        const s = tlsConnect({
          host: '127.0.0.1',
          port,
          ca: pki.ca.certPem,
          cert: web.certPem,
          key: web.keyPem,
          ALPNProtocols: [...offer],
          checkServerIdentity: () => undefined,
        });
        s.once('secureConnect', () => {
          resolve(s.alpnProtocol);
          s.destroy();
        });
        s.once('error', reject);
      });
      expect(negotiated).toBe(expected);
    }
    // And A's HTTP/1.1 upstreams still reach B over mTLS (the existing path): /upstreams says mtls.
    const view = (await (await request(`${a.admin}/upstreams`)).body.json()) as {
      upstreams: Record<string, { endpoints: { tls: string }[] }>;
    };
    expect(view.upstreams.orders!.endpoints[0]!.tls).toBe('mtls');
  });
});
