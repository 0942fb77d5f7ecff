// Raw-socket tunnel fixtures: a local app that answers upgrades (or refuses, or holds them) and echoes, and a raw client.
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

/** The end of an upgrade request's head asking for a raw TCP upgrade. */
export const UPGRADE_TCP = 'Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n';

/**
 * A local app / endpoint on 127.0.0.1. An HTTP upgrade to `/refuse…` gets 403, to `/hold…` no
 * answer; any other gets 101 (`Upgrade: tcp`). After a 101, or at once for bytes that are no HTTP
 * request (a plain CONNECT tunnel), bytes are echoed; `reset` makes it reset the connection.
 */
export async function startRawApp(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let head = '';
    let relaying = false;
    s.on('data', (chunk: Buffer) => {
      if (!relaying) {
        head += chunk.toString('latin1');
        if (!/^[A-Z]+ \S+ HTTP\/1\.1\r\n/.test(head)) relaying = true;
        else {
          if (!head.includes('\r\n\r\n')) return;
          if (head.startsWith('GET /refuse')) {
            s.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope');
            return;
          }
          if (head.startsWith('GET /hold')) return;
          s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n');
          relaying = true;
          return;
        }
      }
      if (chunk.toString('latin1').includes('reset')) s.resetAndDestroy();
      else s.write(chunk);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A raw client connection: what came back so far, and whether it closed. */
export interface RawClient {
  readonly socket: Socket;
  text(): string;
  readonly ended: Promise<void>;
}

/** Connects (plain TCP, or TLS with `tls` options) and sends `head`. */
export function rawClient(socket: Socket, head: string): RawClient {
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => undefined);
  const ended = new Promise<void>((r) => socket.once('close', () => r()));
  socket.write(head);
  return { socket, text: () => text, ended };
}

/** A raw client over plain TCP to 127.0.0.1:`port`, `head` sent. */
export const plain = (port: number, head: string): RawClient => rawClient(connect(port, '127.0.0.1'), head);

/** Polls `check` every 10 ms until it holds; throws naming `what` after `ms`. */
export async function until(check: () => boolean, what: string, ms = 4000): Promise<void> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
