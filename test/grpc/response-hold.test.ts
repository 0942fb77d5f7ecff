// A gRPC response waits for its status (retries.grpcResponseHold): an endpoint lost between its message and its status costs no call.
import { connect, createServer, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';

/** One gRPC message frame (uncompressed) carrying `payload`. */
function frame(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

interface Answer {
  headers: Record<string, unknown>;
  body: Buffer;
  trailers: Record<string, unknown> | undefined;
  /** ms from the request to the first response byte, and to the trailers. */
  firstDataMs: number | undefined;
  trailersMs: number | undefined;
  /** RST_STREAM code when the stream was reset (0: it ended cleanly). */
  rstCode: number;
}

/** One unary gRPC call over h2c with node:http2 itself, so the frames' timing can be seen. */
function call(origin: string, authority: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = connect(origin);
    session.on('error', reject);
    const started = performance.now();
    const stream = session.request({
      ':method': 'POST',
      ':path': '/meshlet.test.v1.Echo/Unary',
      ':authority': authority,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const answer: Answer = {
      headers: {},
      body: Buffer.alloc(0),
      trailers: undefined,
      firstDataMs: undefined,
      trailersMs: undefined,
      rstCode: 0,
    };
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (answer.headers = h));
    stream.on('data', (d: Buffer) => {
      answer.firstDataMs ??= performance.now() - started;
      chunks.push(d);
    });
    stream.on('trailers', (t) => {
      answer.trailers = t;
      answer.trailersMs = performance.now() - started;
    });
    stream.on('error', () => {});
    stream.on('close', () => {
      answer.rstCode = stream.rstCode ?? 0;
      answer.body = Buffer.concat(chunks);
      session.close();
      resolve(answer);
    });
    stream.end(frame(Buffer.from('hello')));
  });
}

/**
 * An HTTP/2 gRPC-shaped server: each call is answered with its headers and `message`; then
 * `finish` either sends the status or does something worse.
 */
async function grpcServer(
  message: Buffer,
  finish: (stream: ServerHttp2Stream) => void,
): Promise<{ server: Http2Server; endpoint: string; calls: () => number }> {
  let calls = 0;
  const server = createServer();
  server.on('stream', (stream) => {
    calls++;
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.write(frame(message), () => finish(stream));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { server, endpoint: `127.0.0.1:${port}`, calls: () => calls };
}

/** The endpoint dies after the message went out and before the status (what SIGKILL does to grpc-js). */
const dieBeforeStatus = (stream: ServerHttp2Stream): void => {
  setTimeout(() => stream.session?.socket.destroy(), 5);
};
const endNow = (stream: ServerHttp2Stream): void => {
  stream.end();
};
const endAfter400ms = (stream: ServerHttp2Stream): void => {
  setTimeout(() => stream.end(), 400);
};

describe('gRPC response hold', () => {
  const servers: Http2Server[] = [];
  let mesh: InProcessMeshlet;
  let dying: Awaited<ReturnType<typeof grpcServer>>;
  let whole: Awaited<ReturnType<typeof grpcServer>>;

  beforeAll(async () => {
    dying = await grpcServer(Buffer.from('from-dying'), dieBeforeStatus);
    whole = await grpcServer(Buffer.from('from-whole'), endNow);
    const slowStatus = await grpcServer(Buffer.from('first'), endAfter400ms);
    const bigSlowStatus = await grpcServer(Buffer.alloc(100 * 1024, 'b'), endAfter400ms);
    servers.push(dying.server, whole.server, slowStatus.server, bigSlowStatus.server);
    const noEjection = { outlierDetection: { enabled: false }, circuitBreaker: { enabled: false } };
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          mixed: [dying.endpoint, whole.endpoint],
          doomed: [dying.endpoint],
          unheld: [dying.endpoint],
          slow: [slowStatus.endpoint],
          big: [bigSlowStatus.endpoint],
        },
      },
      upstreams: {
        // A long hold, so that a loaded test machine never releases it before the endpoint dies.
        mixed: { protocol: 'grpc', retries: { grpcResponseHold: '2s' }, ...noEjection },
        doomed: { protocol: 'grpc', retries: { grpcResponseHold: '2s' }, ...noEjection },
        unheld: { protocol: 'grpc', retries: { grpcResponseHold: 0 }, ...noEjection },
        slow: { protocol: 'grpc' },
        big: { protocol: 'grpc', retries: { grpcResponseHold: '5s' } },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  });

  it('an endpoint lost between its message and its status: the call is retried and succeeds', async () => {
    const before = dying.calls();
    for (let i = 0; i < 12; i++) {
      const a = await call(mesh.outbound, 'mixed');
      expect(a.rstCode).toBe(0);
      expect(a.trailers?.['grpc-status']).toBe('0');
      expect(a.body.subarray(5).toString()).toBe('from-whole');
    }
    // Random choice of two endpoints over 12 calls: the dying one was tried (2^-12 odds otherwise).
    expect(dying.calls() - before).toBeGreaterThan(0);
  });

  it('held attempts lost before their status are retried; the last one, with no retry left, is not held', async () => {
    const before = dying.calls();
    const a = await call(mesh.outbound, 'doomed');
    expect(dying.calls() - before).toBe(3);
    expect(a.headers['x-meshlet-attempts']).toBe('3');
    // The last attempt streamed its message; its loss ends the call with UNAVAILABLE in the
    // trailers (Linkerd's gRPC rescue), not a reset stream.
    expect(a.body.subarray(5).toString()).toBe('from-dying');
    expect(a.trailers?.['grpc-status']).toBe('14');
    expect(String(a.trailers?.['grpc-message'])).toMatch(/connection reset/);
    expect(a.rstCode).toBe(0);
  });

  it('grpcResponseHold 0: the message streams at once, and losing the endpoint then fails the call', async () => {
    const before = dying.calls();
    const a = await call(mesh.outbound, 'unheld');
    expect(dying.calls() - before).toBe(1);
    expect(a.headers['x-meshlet-attempts']).toBe('1');
    expect(a.body.subarray(5).toString()).toBe('from-dying');
    expect(a.trailers?.['grpc-status']).toBe('14');
  });

  it('a status that is slow to come: the message goes out when the hold ends (20 ms), not with the status', async () => {
    const a = await call(mesh.outbound, 'slow');
    expect(a.trailers?.['grpc-status']).toBe('0');
    expect(a.trailersMs).toBeGreaterThanOrEqual(390);
    expect(a.firstDataMs).toBeLessThan(a.trailersMs! - 150);
  });

  it('messages beyond bufferLimitBytes (64 KiB) stream at once, whatever the hold', async () => {
    const a = await call(mesh.outbound, 'big');
    expect(a.trailers?.['grpc-status']).toBe('0');
    expect(a.body.length).toBe(5 + 100 * 1024);
    expect(a.trailersMs).toBeGreaterThanOrEqual(390);
    expect(a.firstDataMs).toBeLessThan(a.trailersMs! - 150);
  });
});
