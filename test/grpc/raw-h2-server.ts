// A frame-level HTTP/2 (h2c) server for gRPC fault tests: sends RST_STREAM, GOAWAY and HEADERS exactly when told (node:http2 cannot reset a stream without ending it first); and a raw gRPC call to drive them through meshlet.
import * as http2 from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/** HTTP/2 frame types used here (RFC 9113 §6). */
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;
const PADDED = 0x8;
const PRIORITY = 0x20;

/** HTTP/2 error codes (RFC 9113 §7). */
export const H2_ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

/** An HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1). */
function hpackInt(value: number, n: number, first: number): number[] {
  const max = (1 << n) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** A header block of literal fields without indexing, new names, no Huffman (RFC 7541 §6.2.2). */
function hpack(headers: readonly (readonly [string, string])[]): Buffer {
  const bytes: number[] = [];
  for (const [name, value] of headers) {
    bytes.push(0x00);
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    bytes.push(...hpackInt(n.length, 7, 0), ...n, ...hpackInt(v.length, 7, 0), ...v);
  }
  return Buffer.from(bytes);
}

/** One frame. */
function frameOf(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** A gRPC length-prefixed message (uncompressed). */
export function grpcFrame(payload: Buffer | string): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** One HTTP/2 connection, as the test drives it. */
export class RawH2Connection {
  readonly socket: Socket;
  constructor(socket: Socket) {
    this.socket = socket;
  }
  #send(frame: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(frame);
  }
  /** A HEADERS frame (END_HEADERS; END_STREAM when `end`), e.g. `[[':status','200'], …]`. */
  headers(stream: number, headers: readonly (readonly [string, string])[], end = false): void {
    this.#send(frameOf(HEADERS, END_HEADERS | (end ? END_STREAM : 0), stream, hpack(headers)));
  }
  /** A DATA frame (at most 16 KiB, the default SETTINGS_MAX_FRAME_SIZE). */
  data(stream: number, payload: Buffer, end = false): void {
    this.#send(frameOf(DATA, end ? END_STREAM : 0, stream, payload));
  }
  /** RST_STREAM with `code`. */
  rst(stream: number, code: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(code);
    this.#send(frameOf(RST_STREAM, 0, stream, p));
  }
  /** GOAWAY with `lastStreamId` and `code`. */
  goaway(lastStreamId: number, code: number): void {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(lastStreamId & 0x7fffffff, 0);
    p.writeUInt32BE(code, 4);
    this.#send(frameOf(GOAWAY, 0, 0, p));
  }
  /** The standard answer: 200, `application/grpc`, one message `reply`, `grpc-status: 0` trailers. */
  ok(stream: number, reply: string): void {
    this.headers(stream, [
      [':status', '200'],
      ['content-type', 'application/grpc'],
    ]);
    this.data(stream, grpcFrame(reply));
    this.headers(stream, [['grpc-status', '0']], true);
  }
}

/** What the server saw of one request stream. */
export interface RawStream {
  readonly id: number;
  readonly conn: RawH2Connection;
  /** The raw header block (HPACK-encoded, not decoded: tests only need to count and answer). */
  readonly block: Buffer;
  /** Request body bytes received so far (DATA payloads). */
  bodyBytes: number;
  /** Whether the request ended (END_STREAM seen). */
  ended: boolean;
  /** RST_STREAM code the client sent for it, or null. */
  resetBy: number | null;
}

export interface RawH2Server {
  readonly endpoint: string;
  readonly streams: RawStream[];
  /** Every SETTINGS parameter clients sent (identifier → last value), RFC 9113 §6.5.2. */
  readonly settings: Map<number, number>;
  close(): Promise<void>;
}

/**
 * Starts a frame-level h2c server on 127.0.0.1: answers the preface and SETTINGS, PINGs, and calls
 * `onRequest` once a request stream's body has ended (`onHeaders` when its HEADERS arrive), so the
 * test decides every frame of the answer.
 */
export async function startRawH2Server(handlers: {
  onRequest?: (s: RawStream) => void;
  onHeaders?: (s: RawStream) => void;
}): Promise<RawH2Server> {
  const streams: RawStream[] = [];
  const settings = new Map<number, number>();
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const conn = new RawH2Connection(socket);
    const open = new Map<number, RawStream>();
    let buf = Buffer.alloc(0);
    let prefaceSeen = false;
    let pendingBlock: { id: number; parts: Buffer[]; end: boolean } | null = null;
    socket.write(frameOf(SETTINGS, 0, 0));
    const started = (id: number, block: Buffer, end: boolean): void => {
      const s: RawStream = { id, conn, block, bodyBytes: 0, ended: end, resetBy: null };
      open.set(id, s);
      streams.push(s);
      handlers.onHeaders?.(s);
      if (end) handlers.onRequest?.(s);
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!prefaceSeen) {
        if (buf.length < 24) return;
        buf = buf.subarray(24);
        prefaceSeen = true;
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) return;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        let payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === SETTINGS && (flags & ACK) === 0) {
          for (let i = 0; i + 6 <= payload.length; i += 6)
            settings.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2));
          socket.write(frameOf(SETTINGS, ACK, 0));
        } else if (type === PING && (flags & ACK) === 0) socket.write(frameOf(PING, ACK, 0, payload));
        else if (type === HEADERS) {
          if (flags & PADDED) payload = payload.subarray(1, payload.length - payload[0]!);
          if (flags & PRIORITY) payload = payload.subarray(5);
          const existing = open.get(id);
          if (existing !== undefined) {
            // Request trailers: the body ends.
            if (flags & END_STREAM) {
              existing.ended = true;
              handlers.onRequest?.(existing);
            }
          } else if (flags & END_HEADERS) started(id, Buffer.from(payload), (flags & END_STREAM) !== 0);
          else pendingBlock = { id, parts: [Buffer.from(payload)], end: (flags & END_STREAM) !== 0 };
        } else if (type === CONTINUATION && pendingBlock !== null) {
          pendingBlock.parts.push(Buffer.from(payload));
          if (flags & END_HEADERS) {
            const p = pendingBlock;
            pendingBlock = null;
            started(p.id, Buffer.concat(p.parts), p.end);
          }
        } else if (type === DATA) {
          const s = open.get(id);
          if (s !== undefined) {
            s.bodyBytes += len;
            if (flags & END_STREAM) {
              s.ended = true;
              handlers.onRequest?.(s);
            }
          }
        } else if (type === RST_STREAM) {
          const s = open.get(id);
          if (s !== undefined) s.resetBy = payload.readUInt32BE(0);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `127.0.0.1:${port}`,
    streams,
    settings,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** What a raw gRPC call through meshlet got: response headers, trailers, and the first message's text. */
export interface RawGrpcAnswer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: string;
}

/** One unary-shaped gRPC call (one message, `req`) to `authority` over a fresh h2c session to `origin`. */
export function rawGrpcCall(origin: string, authority: string): Promise<RawGrpcAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin);
    session.on('error', reject);
    const s = session.request({
      ':method': 'POST',
      ':path': '/pkg.Svc/Call',
      ':authority': authority,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const answer: RawGrpcAnswer = { headers: {}, trailers: undefined, body: '' };
    const chunks: Buffer[] = [];
    s.on('response', (h) => (answer.headers = h));
    s.on('trailers', (t) => (answer.trailers = t));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => {
      answer.body = Buffer.concat(chunks).subarray(5).toString();
      session.close();
      resolve(answer);
    });
    s.end(grpcFrame('req'));
  });
}
