// A raw HTTP/2 client for hostile tests: writes frames node:http2 will not send and records what the server answers.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/** Frame types (RFC 9113 §6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Error codes (RFC 9113 §7) the tests look for. */
export const H2Error = { NO_ERROR: 0x0, PROTOCOL_ERROR: 0x1, CANCEL: 0x8, ENHANCE_YOUR_CALM: 0xb } as const;

const END_STREAM = 0x1;
const END_HEADERS = 0x4;

/** The client connection preface. */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** One frame: 9-byte header and payload. */
export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** A SETTINGS frame with `[id, value]` entries (no ACK). */
export function settings(entries: [number, number][] = []): Buffer {
  const p = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, p);
}

/** SETTINGS ACK. */
export const SETTINGS_ACK = frame(FrameType.SETTINGS, 0x1, 0);

/** An HPACK string literal, no Huffman (lengths under 127 or longer, with the 7-bit prefix integer). */
function hpackString(s: string): Buffer {
  return Buffer.concat([hpackInt(Buffer.byteLength(s, 'latin1'), 7, 0), Buffer.from(s, 'latin1')]);
}

/** An HPACK integer with an `n`-bit prefix and the given high bits. */
export function hpackInt(value: number, n: number, high: number): Buffer {
  const max = (1 << n) - 1;
  if (value < max) return Buffer.from([high | value]);
  const out = [high | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A header field as "literal without indexing, new name". */
export function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
}

/** A header field as "literal with incremental indexing, new name" (it enters the dynamic table at index 62). */
export function indexedLiteral(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]);
}

/** A header block for `GET path` on `authority` plus `extra` fields. */
export function requestBlock(authority: string, path = '/', method = 'GET', extra: Buffer[] = []): Buffer {
  return Buffer.concat([
    literal(':method', method),
    literal(':scheme', 'http'),
    literal(':path', path),
    literal(':authority', authority),
    ...extra,
  ]);
}

/** HEADERS with END_HEADERS (and END_STREAM unless `open`). */
export function headers(streamId: number, block: Buffer, open = false): Buffer {
  return frame(FrameType.HEADERS, END_HEADERS | (open ? 0 : END_STREAM), streamId, block);
}

/** HEADERS without END_HEADERS: a CONTINUATION must follow. */
export function headersUnfinished(streamId: number, block: Buffer): Buffer {
  return frame(FrameType.HEADERS, END_STREAM, streamId, block);
}

/** CONTINUATION, with END_HEADERS when `last`. */
export function continuation(streamId: number, block: Buffer, last = false): Buffer {
  return frame(FrameType.CONTINUATION, last ? END_HEADERS : 0, streamId, block);
}

/** RST_STREAM with `code`. */
export function rstStream(streamId: number, code: number = H2Error.CANCEL): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FrameType.RST_STREAM, 0, streamId, p);
}

/** PING (not ACK). */
export function ping(data = Buffer.alloc(8)): Buffer {
  return frame(FrameType.PING, 0, 0, data);
}

/** WINDOW_UPDATE of `increment` on `streamId` (0: the connection). */
export function windowUpdate(streamId: number, increment: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(increment);
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, p);
}

/** DATA, END_STREAM when `end`. */
export function data(streamId: number, payload: Buffer, end = false): Buffer {
  return frame(FrameType.DATA, end ? END_STREAM : 0, streamId, payload);
}

/** A GOAWAY the server sent. */
export interface GoAway {
  lastStreamId: number;
  code: number;
}

/** What a raw connection has seen from the server. */
export class RawH2 {
  readonly socket: Socket;
  /** Frames received by type. */
  readonly counts = new Map<number, number>();
  /** Bytes received. */
  received = 0;
  /** DATA payload bytes received. */
  dataBytes = 0;
  goaway: GoAway | null = null;
  /** Streams the server reset, with the code. */
  readonly resets = new Map<number, number>();
  /** Streams the server answered with HEADERS. */
  readonly answered = new Set<number>();
  /** Resolves when the socket closes. */
  readonly closed: Promise<void>;
  #buf: Buffer = Buffer.alloc(0);
  #ackSettings: boolean;

  private constructor(socket: Socket, ackSettings: boolean) {
    this.socket = socket;
    this.#ackSettings = ackSettings;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
  }

  /**
   * Connects to 127.0.0.1:port (h2c, or TLS with ALPN h2 when `tls` is given), sends the preface and
   * `initialSettings` (a SETTINGS frame), and resolves once connected. Server SETTINGS are ACKed
   * unless `ackSettings` is false.
   */
  static async open(
    port: number,
    options: {
      tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
      initialSettings?: [number, number][];
      ackSettings?: boolean;
    } = {},
  ): Promise<RawH2> {
    const socket: Socket = await new Promise((resolve, reject) => {
      const s =
        options.tls === undefined
          ? netConnect(port, '127.0.0.1', () => resolve(s))
          : tlsConnect(
              {
                port,
                host: '127.0.0.1',
                ...options.tls,
                ALPNProtocols: ['h2'],
                checkServerIdentity: () => undefined,
              },
              () => resolve(s),
            );
      s.once('error', reject);
    });
    socket.setNoDelay(true);
    const raw = new RawH2(socket, options.ackSettings !== false);
    raw.write(Buffer.concat([PREFACE, settings(options.initialSettings ?? [])]));
    return raw;
  }

  /** Writes bytes unless the socket is gone; true when written. */
  write(bytes: Buffer): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    this.socket.write(bytes);
    return true;
  }

  /** Resolves when the socket has drained its write buffer (or closed). */
  drained(): Promise<void> {
    if (this.socket.destroyed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Resolves true when `cond()` holds within `ms`, else false (polls every 10 ms). */
  async until(cond: () => boolean, ms: number): Promise<boolean> {
    const end = performance.now() + ms;
    while (!cond()) {
      if (performance.now() > end) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }

  destroy(): void {
    this.socket.destroy();
  }

  #read(chunk: Buffer): void {
    this.received += chunk.length;
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    while (this.#buf.length >= 9) {
      const len = this.#buf.readUIntBE(0, 3);
      if (this.#buf.length < 9 + len) break;
      const type = this.#buf[3]!;
      const flags = this.#buf[4]!;
      const id = this.#buf.readUInt32BE(5) & 0x7fffffff;
      const payload = this.#buf.subarray(9, 9 + len);
      this.#buf = this.#buf.subarray(9 + len);
      this.counts.set(type, (this.counts.get(type) ?? 0) + 1);
      if (type === FrameType.SETTINGS && (flags & 0x1) === 0 && this.#ackSettings) this.write(SETTINGS_ACK);
      else if (type === FrameType.GOAWAY)
        this.goaway = { lastStreamId: payload.readUInt32BE(0) & 0x7fffffff, code: payload.readUInt32BE(4) };
      else if (type === FrameType.RST_STREAM) this.resets.set(id, payload.readUInt32BE(0));
      else if (type === FrameType.HEADERS) this.answered.add(id);
      else if (type === FrameType.DATA) this.dataBytes += len;
    }
  }
}
