// A client that reads none of a big response holds neither memory nor the upstream for ever: backpressure reaches the endpoint, and the idle timeout lets the client go.
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { meshletSuite } from '../helpers/meshlet-suite.ts';

const SIZE = 100 * 1048576;
const IDLE_MS = 1500;

describe('a client that never reads a 100 MiB response', () => {
  let written = 0;
  let endpointClosed = false;
  const suite = meshletSuite(
    (up) => ({
      registry: { type: 'static', endpoints: { users: [up.endpoint] } },
      upstreams: { users: { timeouts: { idle: IDLE_MS } } },
    }),
    (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': String(SIZE) });
      const chunk = Buffer.alloc(65536, 97);
      const pump = (): void => {
        while (written < SIZE) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      res.on('close', () => (endpointClosed = true));
      pump();
    },
  );

  it('is bounded in memory by backpressure and closed after timeouts.idle, logged 499 request_timeout', async () => {
    const { mesh, port } = suite;
    const rssBefore = process.memoryUsage().rss;
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    let read = 0;
    const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /big HTTP/1.1\r\nHost: users\r\n\r\n');
    socket.pause();
    const startedAt = performance.now();
    // The exchange ends once the client drained nothing for the idle timeout (bounded wait).
    let line: Record<string, unknown> | undefined;
    while (line === undefined && performance.now() - startedAt < 8000) {
      await new Promise((r) => setTimeout(r, 100));
      line = mesh.logs.find((l) => l.msg === 'access' && l.path === '/big');
    }
    const waited = performance.now() - startedAt;
    // Backpressure: the endpoint wrote what the socket buffers hold, not the 100 MiB.
    expect(written).toBeLessThan(40 * 1048576);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1048576);
    expect(line).toMatchObject({ status: 499, error: 'request_timeout', upstream: 'users' });
    expect(waited).toBeGreaterThan(IDLE_MS - 100);
    expect(waited).toBeLessThan(IDLE_MS + 3000);
    await new Promise((r) => setTimeout(r, 200));
    expect(endpointClosed).toBe(true);
    // The client then finds its connection closed, short of the 100 MiB.
    socket.on('data', (d: Buffer) => (read += d.length));
    socket.resume();
    await Promise.race([ended, new Promise((r) => setTimeout(r, 5000))]);
    expect(socket.destroyed).toBe(true);
    expect(read).toBeLessThan(SIZE);
  }, 20_000);
});
