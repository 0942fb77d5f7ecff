// A gRPC request body sent as 1-byte pieces (HTTP/2 DATA frames, HTTP/1.1 chunks) goes upstream in what arrived together, and its replay after a refused stream is the same bytes.
import { createHash } from 'node:crypto';
import * as http2 from 'node:http2';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { grpcFrame, RawH2Connection } from './raw-h2-server.ts';

/** HTTP/2 frame types and flags used here (RFC 9113 §6). */
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PING = 0x6;
const END_STREAM = 0x1;
const ACK = 0x1;
const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
/** Message bytes sent over HTTP/2: under the 65,535-byte connection window a client starts with. */
const H2_BYTES = 60_000;
/** Message bytes sent over HTTP/1.1. */
const H1_BYTES = 200_000;
/** Most pieces the endpoint may see: one per byte was the defect. */
const MAX_PIECES = 1000;
const WAIT_MS = 15_000;

/** One frame. */
function frameOf(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** A gRPC message of `bytes` bytes in all (length prefix included), its bytes in a pattern. */
function message(bytes: number): Buffer {
  const payload = Buffer.alloc(bytes - 5);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) % 251;
  return grpcFrame(payload);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Sends one call over a raw h2c connection to `port`: its HEADERS, then `body` as one DATA frame per
 * byte (all in one socket write, as a client sending at full speed does). Resolves true once the
 * response stream ended (END_STREAM or RST_STREAM), false when it did not within {@link WAIT_MS}.
 */
function sendByteFrames(
  port: number,
  authority: string,
  contentType: string,
  body: Buffer,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1');
    const done = (ended: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ended);
    };
    const timer = setTimeout(() => done(false), WAIT_MS);
    socket.on('error', () => done(false));
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) return;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + len);
        if (type === SETTINGS && (flags & ACK) === 0) socket.write(frameOf(SETTINGS, ACK, 0));
        else if (type === PING && (flags & ACK) === 0) socket.write(frameOf(PING, ACK, 0, Buffer.alloc(8)));
        else if (
          id === 1 &&
          (type === RST_STREAM || ((type === HEADERS || type === DATA) && flags & END_STREAM))
        )
          done(true);
      }
    });
    socket.on('connect', () => {
      socket.write(PREFACE);
      socket.write(frameOf(SETTINGS, 0, 0));
      new RawH2Connection(socket).headers(1, [
        [':method', 'POST'],
        [':scheme', 'http'],
        [':path', '/pkg.Upload/Send'],
        [':authority', authority],
        ['content-type', contentType],
        ['te', 'trailers'],
      ]);
      const frames: Buffer[] = [];
      for (let i = 0; i < body.length; i++)
        frames.push(frameOf(DATA, i === body.length - 1 ? END_STREAM : 0, 1, body.subarray(i, i + 1)));
      socket.write(Buffer.concat(frames));
    });
  });
}

/** Sends `body` as a chunked HTTP/1.1 POST of 1-byte chunks to `port`; resolves with the reply's text. */
function sendByteChunks(port: number, host: string, contentType: string, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => socket.destroy(), WAIT_MS);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('\r\n\r\n') && text.endsWith('\r\n0\r\n\r\n')) socket.destroy();
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.write(
      `POST /pkg.Upload/Send HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ${contentType}\r\n` +
        'Transfer-Encoding: chunked\r\n\r\n',
    );
    const parts: Buffer[] = [];
    for (let i = 0; i < body.length; i++)
      parts.push(Buffer.from('1\r\n'), body.subarray(i, i + 1), Buffer.from('\r\n'));
    parts.push(Buffer.from('0\r\n\r\n'));
    socket.write(Buffer.concat(parts));
  });
}

describe('a gRPC-Web request body of 1-byte pieces to an HTTP/1.1 endpoint', () => {
  let up: TestUpstream;
  let mesh: InProcessMeshlet;
  let port: number;
  /** Per request the endpoint served: its body's hash and bytes, and the pieces they came in. */
  const received: { sha: string; bytes: number; pieces: number }[] = [];

  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        received.push({ sha: sha(body), bytes: body.length, pieces: chunks.length });
        res.writeHead(200, { 'content-type': 'application/grpc-web+proto', 'grpc-status': '0' });
        res.end();
      });
    });
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { web: [up.endpoint] } },
      upstreams: { web: { timeouts: { request: '15s' } } },
      accessLog: { enabled: false },
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh?.close();
    await up?.close();
  });

  it(
    'from an HTTP/2 caller sending one DATA frame per byte arrives whole, in few pieces',
    async () => {
      const body = message(H2_BYTES);
      expect(await sendByteFrames(port, 'web', 'application/grpc-web+proto', body)).toBe(true);
      const served = received.at(-1)!;
      expect({ sha: served.sha, bytes: served.bytes }).toEqual({ sha: sha(body), bytes: body.length });
      // Each byte went upstream as its own chunk (60,000 pieces): now what arrived together goes together.
      expect(served.pieces).toBeLessThan(MAX_PIECES);
    },
    WAIT_MS + 5000,
  );

  it(
    'from an HTTP/1.1 caller sending 1-byte chunks arrives whole, in few pieces',
    async () => {
      const body = message(H1_BYTES);
      const reply = await sendByteChunks(port, 'web', 'application/grpc-web+proto', body);
      expect(reply).toMatch(/^HTTP\/1\.1 200 /);
      const served = received.at(-1)!;
      expect({ sha: served.sha, bytes: served.bytes }).toEqual({ sha: sha(body), bytes: body.length });
      // Was 200,000 pieces (the endpoint read as many times as meshlet wrote, ~35,000).
      expect(served.pieces).toBeLessThan(MAX_PIECES);
    },
    WAIT_MS + 5000,
  );
});

describe('a gRPC call of 1-byte DATA frames whose first stream is refused', () => {
  let server: http2.Http2Server;
  let mesh: InProcessMeshlet;
  /** Per stream the endpoint saw: the body's hash and bytes. */
  const seen: { sha: string; bytes: number }[] = [];

  beforeAll(async () => {
    server = http2.createServer();
    server.on('stream', (s) => {
      s.on('error', () => {});
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => {
        const body = Buffer.concat(chunks);
        seen.push({ sha: sha(body), bytes: body.length });
        // The first stream is refused once its body was read (RFC 9113 §8.7: not processed).
        if (seen.length === 1) s.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        else {
          s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
          s.end(grpcFrame('ok'));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { up: [endpoint] } },
      upstreams: {
        up: { protocol: 'grpc', outlierDetection: { enabled: false }, circuitBreaker: { enabled: false } },
      },
    });
  });
  afterAll(async () => {
    await mesh?.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it(
    'is replayed with the same bytes, and succeeds',
    async () => {
      const body = message(H2_BYTES);
      const port = Number(new URL(mesh.outbound).port);
      expect(await sendByteFrames(port, 'up', 'application/grpc', body)).toBe(true);
      const want = { sha: sha(body), bytes: body.length };
      expect(seen).toEqual([want, want]);
      const line = mesh.logs.find((l) => l.msg === 'access' && l.upstream === 'up');
      expect(line).toMatchObject({ status: 200, grpcStatus: 0, attempts: 2 });
    },
    WAIT_MS + 5000,
  );
});
