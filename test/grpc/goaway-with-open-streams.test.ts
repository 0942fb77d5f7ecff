// An endpoint that sends GOAWAY while a long stream is open on the session (gRPC's max connection age, a peer meshlet draining): new calls get a new session at once instead of waiting for that stream's end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { EchoClient, echoClient, type EchoReply, type EchoStub, grpc, unary } from '../helpers/grpc.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';

/** A server stream's messages and their spacing: the stream lasts 4 s. */
const STREAM_MESSAGES = 40;
const STREAM_GAP_MS = 100;
/** The longest a unary call may take while the stream runs (one takes a few ms; a stalled one, the stream's rest). */
const UNARY_WITHIN_MS = 1500;

/** A gRPC Echo app whose ServerStream sends `count` messages, one every 100 ms; unary answers at once. */
async function startApp(options: grpc.ServerOptions = {}): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server(options);
  server.addService(EchoClient.service, {
    Unary(call: grpc.ServerUnaryCall<{ message: string }, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      cb(null, { message: call.request.message, servedBy: 'app', index: 0 });
    },
    ServerStream(call: grpc.ServerWritableStream<{ count: number }, EchoReply>) {
      let i = 0;
      const timer = setInterval(() => {
        if (i === call.request.count) {
          clearInterval(timer);
          call.end();
          return;
        }
        call.write({ message: 'tick', servedBy: 'app', index: i++ });
      }, STREAM_GAP_MS);
      call.on('cancelled', () => clearInterval(timer));
    },
    ClientStream(_call: unknown, cb: grpc.sendUnaryData<EchoReply>) {
      cb({ code: grpc.status.UNIMPLEMENTED });
    },
    Bidi(call: grpc.ServerDuplexStream<unknown, EchoReply>) {
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    ),
  );
  return { port, server };
}

/** Opens a 4 s server stream; resolves with its status and message count once it ends. */
function longStream(client: EchoStub): Promise<{ code: number; messages: number }> {
  const call = client.ServerStream({
    message: 's',
    count: STREAM_MESSAGES,
  }) as grpc.ClientReadableStream<EchoReply>;
  let messages = 0;
  return new Promise((resolve) => {
    call.on('data', () => messages++);
    call.on('error', () => {});
    call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, messages }));
  });
}

/** Makes `n` unary calls one after another; returns each one's outcome and duration. */
async function timedUnaries(client: EchoStub, n: number): Promise<{ code: number; ms: number }[]> {
  const out: { code: number; ms: number }[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await unary(client, { message: `u${i}` }, { deadlineMs: 10_000 });
    out.push({ code: r.error?.code ?? grpc.status.OK, ms: Math.round(performance.now() - t0) });
  }
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});

describe('the app behind the peer meshlet sends GOAWAY (max connection age) with a stream open', () => {
  let app: { port: number; server: grpc.Server };
  let b: InProcessMeshlet;
  let a: InProcessMeshlet;
  beforeAll(async () => {
    // grpc-js sends GOAWAY once a connection is 500 ms old and lets its streams run on (no grace limit).
    app = await startApp({ 'grpc.max_connection_age_ms': 500 });
    b = await startMeshlet({
      service: { name: 'orders', port: app.port, protocol: 'grpc' },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'orders'),
      accessLog: { enabled: false },
    });
    a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: { type: 'static', endpoints: { orders: [peerEndpoint(b)] } },
      upstreams: { orders: { protocol: 'grpc' } },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    app?.server.forceShutdown();
  });

  it("unary calls through B answer at once while the stream runs on the app's old connection", async () => {
    const client = echoClient(new URL(a.outbound).host, 'orders');
    try {
      const stream = longStream(client);
      await sleep(1000); // the app's connection from B got its GOAWAY at 500 ms
      const calls = await timedUnaries(client, 3);
      // Before the fix: B's HTTP/2 client held each new call until the stream ended (the first ~3 s).
      for (const c of calls) expect(c.code).toBe(grpc.status.OK);
      expect(Math.max(...calls.map((c) => c.ms))).toBeLessThan(UNARY_WITHIN_MS);
      expect(await stream).toEqual({ code: grpc.status.OK, messages: STREAM_MESSAGES });
    } finally {
      client.close();
    }
  });
});

describe('a peer meshlet drains (GOAWAY) with a stream open on it', () => {
  let app: { port: number; server: grpc.Server };
  let b1: InProcessMeshlet;
  let b2: InProcessMeshlet;
  let a: InProcessMeshlet;
  beforeAll(async () => {
    app = await startApp();
    const peer = async (): Promise<InProcessMeshlet> =>
      startMeshlet({
        service: { name: 'orders', port: app.port, protocol: 'grpc' },
        listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
        tls: await tlsFilesConfig(pki, 'orders'),
        shutdown: { drainTimeout: 10_000 },
        accessLog: { enabled: false },
      });
    b1 = await peer();
    b2 = await peer();
    a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: { type: 'static', endpoints: { orders: [peerEndpoint(b1), peerEndpoint(b2)] } },
      upstreams: {
        orders: { protocol: 'grpc', loadBalancer: 'round_robin', outlierDetection: { enabled: false } },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await a?.close();
    await b1?.close();
    await b2?.close();
    app?.server.forceShutdown();
  });

  it('calls picked for the draining peer move to the other one at once; its stream finishes', async () => {
    const client = echoClient(new URL(a.outbound).host, 'orders');
    try {
      // Round robin: one stream on each peer.
      const streams = [longStream(client), longStream(client)];
      await sleep(300);
      const drained = b1.close(); // GOAWAY to A's session; B1 stops accepting, its stream runs on
      await sleep(200);
      const calls = await timedUnaries(client, 4);
      // Before the fix: a call picked for B1 waited for B1's stream to end (~3.5 s), then moved on.
      for (const c of calls) expect(c.code).toBe(grpc.status.OK);
      expect(Math.max(...calls.map((c) => c.ms))).toBeLessThan(UNARY_WITHIN_MS);
      for (const s of await Promise.all(streams))
        expect(s).toEqual({ code: grpc.status.OK, messages: STREAM_MESSAGES });
      await drained;
    } finally {
      client.close();
    }
  });
});
