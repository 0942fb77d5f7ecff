// Hostile endpoints for the response-smuggling tests: one scripted answer to `/hostile`, an honest one (naming its connection) to every other path.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { frame, FrameType, literal, settings, SETTINGS_ACK } from '../hostile-h2/h2-frames.ts';
import { collectReply, parseReply, replyComplete } from '../helpers/raw-http.ts';

/** The path whose request gets the endpoint's scripted (hostile) answer. */
export const HOSTILE_PATH = '/hostile';

/** What an honest answer to `path` on connection `conn` (1-based, in accept order) says in its body. */
export function honestBody(path: string, conn: number): string {
  return `ok ${path} c${conn}`;
}

/** A raw endpoint that counts the connections it accepted; `close` destroys them and stops listening. */
export interface ScriptedEndpoint {
  readonly port: number;
  /** `127.0.0.1:PORT`, for a static registry. */
  readonly endpoint: string;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/** The scripted answer of an HTTP/1.1 endpoint to `/hostile`. */
export interface H1Script {
  /** Bytes written (latin1) as the answer. */
  readonly bytes: string;
  /** More bytes written on the same connection 30 ms later (before any next request). */
  readonly later?: string;
  /** End the connection after the answer (after `later`, when given), at once or after this many ms. */
  readonly closeAfterMs?: number;
}

/** Listens on 127.0.0.1:0 with `onSocket`, tracking sockets so `close` can destroy them. */
async function listen(onSocket: (socket: Socket, conn: number) => void): Promise<ScriptedEndpoint> {
  const sockets = new Set<Socket>();
  let conns = 0;
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onSocket(socket, ++conns);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    endpoint: `127.0.0.1:${port}`,
    connections: () => conns,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Starts an HTTP/1.1 endpoint that answers `GET|HEAD /hostile` with `script`'s raw bytes (or each
 * path of a `{ path: script }` map with its script), and any other request with `200` and
 * {@link honestBody} (a HEAD: the head only). Request heads are read by their blank line (the
 * tests send no request bodies).
 */
export function startH1Endpoint(script: H1Script | Record<string, H1Script>): Promise<ScriptedEndpoint> {
  const scripts: Record<string, H1Script> =
    typeof script.bytes === 'string'
      ? { [HOSTILE_PATH]: script as H1Script }
      : (script as Record<string, H1Script>);
  return listen((socket, conn) => {
    let seen = '';
    socket.on('data', (d: Buffer) => {
      seen += d.toString('latin1');
      for (let end = seen.indexOf('\r\n\r\n'); end !== -1; end = seen.indexOf('\r\n\r\n')) {
        const [method, path = ''] = seen.slice(0, end).split(' ');
        seen = seen.slice(end + 4);
        const scripted = Object.hasOwn(scripts, path) ? scripts[path] : undefined;
        if (scripted === undefined) {
          const body = honestBody(path, conn);
          socket.write(
            `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${method === 'HEAD' ? '' : body}`,
          );
          continue;
        }
        socket.write(scripted.bytes, 'latin1');
        const after = () => {
          if (scripted.later !== undefined && !socket.destroyed) socket.write(scripted.later, 'latin1');
          if (scripted.closeAfterMs !== undefined)
            setTimeout(() => socket.end(), scripted.later !== undefined ? 0 : scripted.closeAfterMs).unref();
        };
        if (scripted.later !== undefined) setTimeout(after, 30).unref();
        else after();
      }
    });
  });
}

/** A response header block of `[name, value]` literals. */
function block(fields: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat(fields.map(([n, v]) => literal(n, v)));
}

/** HEADERS on `stream` (END_HEADERS; END_STREAM when `end`). */
export function h2Headers(
  stream: number,
  fields: readonly (readonly [string, string])[],
  end = false,
): Buffer {
  return frame(FrameType.HEADERS, 0x4 | (end ? 0x1 : 0), stream, block(fields));
}

/** DATA on `stream` (END_STREAM unless `open`). */
export function h2Data(stream: number, text: string, open = false): Buffer {
  return frame(FrameType.DATA, open ? 0 : 0x1, stream, Buffer.from(text, 'latin1'));
}

/**
 * Starts an h2c (prior knowledge) endpoint that answers the first stream it is sent with the frames
 * `script(streamId)` returns (written raw, so it can break the rules node:http2 enforces), and every
 * later stream with `200` and {@link honestBody} (its path taken as `stream N`). One connection
 * serves many streams; the connection number counts accepted connections.
 */
export function startH2Endpoint(script: (stream: number) => Buffer[]): Promise<ScriptedEndpoint> {
  let streams = 0;
  return listen((socket, conn) => {
    let buf = Buffer.alloc(0);
    let preface = false;
    socket.write(settings([]));
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) {
        if (buf.length < 24) return;
        buf = buf.subarray(24);
        preface = true;
      }
      while (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length < 9 + length) return;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + length);
        if (type === FrameType.SETTINGS && (flags & 0x1) === 0) socket.write(SETTINGS_ACK);
        if (type !== FrameType.HEADERS) continue;
        if (++streams === 1) {
          for (const f of script(id)) socket.write(f);
          continue;
        }
        const body = honestBody(`stream ${streams}`, conn);
        socket.write(
          h2Headers(id, [
            [':status', '200'],
            ['content-length', String(body.length)],
          ]),
        );
        socket.write(h2Data(id, body));
      }
    });
  });
}

/** What a client read on its own connection to meshlet. */
export interface ClientReply {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The whole raw text read. */
  raw: string;
  /** Whether the reply was whole (by content-length or the last chunk); false for a cut body. */
  complete: boolean;
}

/**
 * Sends one request (`METHOD path`, `Host: host`) on a fresh connection to 127.0.0.1:port and
 * resolves with what came back once a whole reply was read (with `headOnly` or a HEAD: its head),
 * the server closed, or `timeoutMs` (default 3000) passed; status 0 when nothing came.
 */
export async function clientRequest(
  port: number,
  path: string,
  host: string,
  options: { method?: string; headOnly?: boolean; timeoutMs?: number } = {},
): Promise<ClientReply> {
  const { method = 'GET', timeoutMs = 3000 } = options;
  const socket = connect(port, '127.0.0.1');
  // A HEAD's, 204's or 304's answer is whole at its blank line, whatever content-length it names.
  const headOnly = options.headOnly === true || method === 'HEAD';
  const until = headOnly ? (t: string) => t.includes('\r\n\r\n') : replyComplete;
  const reply = collectReply(socket, { timeoutMs, until });
  socket.write(`${method} ${path} HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
  const { text } = await reply;
  if (text === '') return { status: 0, headers: {}, body: '', raw: text, complete: false };
  return { ...parseReply(text), raw: text, complete: headOnly || replyComplete(text) };
}
