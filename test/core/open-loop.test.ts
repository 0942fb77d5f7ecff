// The bench's fixed-rate generator (bench/open-loop.ts) against real servers: every framing it reads, and what it counts as an error.
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { FixedRateResult as Result } from '../../bench/lib/load.ts';

const OPEN_LOOP = fileURLToPath(new URL('../../bench/open-loop.ts', import.meta.url));

/** Runs the generator for 0.5 s at 200 req/s (100 measured requests) against `port`. */
function openLoop(port: number, path = '/'): Promise<Result> {
  return new Promise((resolve, reject) => {
    const args = [OPEN_LOOP, '--port', String(port), '--rate', '200', '--duration', '0.5', '--warmup', '0.1'];
    const proc = spawn(process.execPath, [...args, '--path', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`open-loop exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as Result);
    });
  });
}

/**
 * A raw HTTP/1.1 server: answers each request (a head ending in a blank line) with `reply(socket, n)`,
 * n counting the requests on that connection from 0. Requests have no body (the generator sends GETs).
 */
async function rawServer(reply: (socket: Socket, n: number, path: string) => void): Promise<Server> {
  const server = createServer((socket) => {
    sockets.push(socket);
    let pending = '';
    let n = 0;
    socket.on('data', (d) => {
      pending += d.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const path = pending.slice(0, end).split(' ')[1] ?? '';
        pending = pending.slice(end + 4);
        reply(socket, n++, path);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return server;
}

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of servers.splice(0))
    await new Promise((r) => {
      s.close(r);
      for (const c of sockets.splice(0)) c.destroy();
    });
});

const portOf = (s: Server): number => (s.address() as { port: number }).port;

describe('bench/open-loop.ts', () => {
  it('reads Content-Length bodies, even when the head and body arrive in pieces, and sends the path asked for', async () => {
    const paths = new Set<string>();
    const server = await rawServer((socket, n, path) => {
      paths.add(path);
      const body = 'x'.repeat(100);
      const response = `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
      if (n % 2 === 0) {
        socket.write(response);
        return;
      }
      // every other response in three writes, split inside the head and inside the body
      socket.write(response.slice(0, 20));
      setImmediate(() => {
        socket.write(response.slice(20, 80));
        setImmediate(() => socket.write(response.slice(80)));
      });
    });
    const r = await openLoop(portOf(server), '/some/path?q=1');
    expect(r).toMatchObject({ rate: 200, sent: 100, completed: 100, errors: 0 });
    expect(r.p50Ms).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
    expect([...paths]).toEqual(['/some/path?q=1']);
  });

  it('reads chunked bodies (chunk sizes in hex, extensions, trailers) written a few bytes at a time', async () => {
    const server = await rawServer((socket) => {
      const response =
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
        'a\r\n0123456789\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\n';
      let at = 0;
      const next = (): void => {
        socket.write(response.slice(at, at + 7));
        at += 7;
        if (at < response.length) setImmediate(next);
      };
      next();
    });
    const r = await openLoop(portOf(server));
    expect(r).toMatchObject({ sent: 100, completed: 100, errors: 0 });
  });

  it('reads 204 responses without a length', async () => {
    const server = await rawServer((socket) => socket.write('HTTP/1.1 204 No Content\r\nx-a: b\r\n\r\n'));
    const r = await openLoop(portOf(server));
    expect(r).toMatchObject({ sent: 100, completed: 100, errors: 0 });
  });

  it('counts 4xx/5xx answers as errors, not latencies', async () => {
    const server = await rawServer((socket, n) =>
      socket.write(
        n % 2 === 0
          ? 'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n'
          : 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok',
      ),
    );
    const r = await openLoop(portOf(server));
    expect(r.sent).toBe(100);
    expect(r.errors).toBeGreaterThan(0);
    expect(r.completed + r.errors).toBe(100);
  });

  it('counts a connection closed mid-response, and a response without framing, as errors, and goes on with new connections', async () => {
    let answered = 0;
    const server = await rawServer((socket) => {
      answered++;
      if (answered % 20 === 0)
        socket.end('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc'); // cut short
      else if (answered % 20 === 10)
        socket.end('HTTP/1.1 200 OK\r\n\r\nread until close'); // no framing
      else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
    const r = await openLoop(portOf(server));
    expect(r.sent).toBe(100);
    expect(r.errors).toBeGreaterThan(0);
    expect(r.completed + r.errors).toBe(100);
    expect(r.completed, JSON.stringify(r)).toBeGreaterThan(50);
  });

  it('counts requests to a port nobody listens on as errors and still exits with its report', async () => {
    const server = await rawServer(() => {});
    const port = portOf(server);
    await new Promise((r) => server.close(r));
    servers.splice(servers.indexOf(server), 1);
    const r = await openLoop(port);
    expect(r).toMatchObject({ sent: 100, completed: 0, errors: 100 });
  });
});
