// gRPC flow control end to end: meshlet's HTTP/2 windows as announced, and a slow reader of a 16 MiB server stream holds the endpoint back instead of filling meshlet's memory.
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H2_STREAM_WINDOW_BYTES } from '../../src/http2/h2-settings.ts';
import { type MeshletProcess, rssOf, spawnMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { grpcFrame, type RawH2Server, startRawH2Server } from './raw-h2-server.ts';

/** SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.5.2). */
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const MiB = 1024 * 1024;
/** The server stream: 256 messages of 64 KiB. */
const TOTAL = 16 * MiB;

describe('gRPC flow control through meshlet', () => {
  it("meshlet's HTTP/2 client announces its 1 MiB stream window to the endpoint", async () => {
    const raw: RawH2Server = await startRawH2Server({ onRequest: (s) => s.conn.ok(s.id, 'ok') });
    const mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { win: [raw.endpoint] } },
      upstreams: { win: { protocol: 'grpc' } },
      accessLog: { enabled: false },
    });
    try {
      const session = http2.connect(mesh.outbound);
      session.on('error', () => {});
      const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const s = session.request({
          ':method': 'POST',
          ':path': '/pkg.Svc/Call',
          ':authority': 'win',
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        s.on('trailers', resolve);
        s.on('error', reject);
        s.resume();
        s.end(grpcFrame('hello'));
      });
      session.close();
      expect(trailers['grpc-status']).toBe('0');
      // undici's default is 256 KiB; README promises 1 MiB per stream.
      expect(raw.settings.get(SETTINGS_INITIAL_WINDOW_SIZE)).toBe(H2_STREAM_WINDOW_BYTES);
    } finally {
      await mesh.close();
      await raw.close();
    }
  });

  it('a response that ends (trailers and all) while the client is not reading reaches it whole', async () => {
    // The endpoint sends 768 KiB and its trailers at once (within meshlet's 1 MiB stream window); the
    // client reads nothing for a while, so meshlet pauses the endpoint's stream with most of it still
    // buffered when the trailers arrive. undici 8.14 stops reading a response at its trailers: the
    // buffered messages were dropped and the call still ended with grpc-status 0.
    const body = Buffer.alloc(768 * 1024);
    for (let i = 0; i < 12; i++) grpcFrame(Buffer.alloc(64 * 1024 - 5, 97 + i)).copy(body, i * 64 * 1024);
    const server = http2.createServer();
    server.on('stream', (s) => {
      s.on('error', () => {});
      s.resume();
      s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
      s.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { ends: [`127.0.0.1:${(server.address() as AddressInfo).port}`] },
      },
      upstreams: { ends: { protocol: 'grpc' } },
      accessLog: { enabled: false },
    });
    try {
      const session = http2.connect(mesh.outbound);
      session.on('error', () => {});
      const s = session.request({
        ':method': 'POST',
        ':path': '/pkg.Bulk/Download',
        ':authority': 'ends',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      let trailers: http2.IncomingHttpHeaders | undefined;
      s.on('trailers', (t) => (trailers = t));
      s.end(grpcFrame('go'));
      await new Promise((r) => s.once('response', r));
      s.pause();
      await new Promise((r) => setTimeout(r, 300));
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.resume();
      await new Promise((r) => s.once('close', r));
      session.close();
      const got = Buffer.concat(chunks);
      expect({ bytes: got.length, same: got.equals(body), status: trailers?.['grpc-status'] }).toEqual({
        bytes: body.length,
        same: true,
        status: '0',
      });
    } finally {
      await mesh.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  describe('a slow reader of a 16 MiB server stream (a meshlet process)', () => {
    let server: http2.Http2Server;
    let mesh: MeshletProcess;
    /** Bytes the endpoint handed to its stream so far (what flow control let it queue). */
    let queued = 0;

    beforeAll(async () => {
      server = http2.createServer();
      server.on('stream', (s) => {
        s.on('error', () => {});
        s.resume();
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        const message = grpcFrame(Buffer.alloc(64 * 1024 - 5, 'z'));
        const pump = (): void => {
          while (queued < TOTAL) {
            queued += message.length;
            if (!s.write(message)) {
              s.once('drain', pump);
              return;
            }
          }
          s.end();
        };
        pump();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      mesh = await spawnMeshlet({
        registry: { type: 'static', endpoints: { bulk: [endpoint] } },
        upstreams: { bulk: { protocol: 'grpc' } },
        listeners: { adminGrpc: { enabled: false } },
        accessLog: { enabled: false },
      });
    });
    afterAll(async () => {
      mesh?.proc.kill('SIGKILL');
      await new Promise<void>((r) => server.close(() => r()));
    });

    it('the endpoint stays a few windows ahead of the reader, meshlet memory stays flat, and every byte arrives', async () => {
      const pid = mesh.proc.pid!;
      const baseRss = await rssOf(pid);
      const session = http2.connect(mesh.outbound);
      session.on('error', () => {});
      const s = session.request({
        ':method': 'POST',
        ':path': '/pkg.Bulk/Download',
        ':authority': 'bulk',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      let trailers: http2.IncomingHttpHeaders | undefined;
      let streamError: string | undefined;
      s.on('trailers', (t) => (trailers = t));
      s.on('error', (err: NodeJS.ErrnoException) => (streamError = err.code ?? err.message));
      let read = 0;
      let stalledAt = 0;
      // Read 1 MiB, then stop reading for a while: the endpoint may only fill the windows on the way.
      const stalled = new Promise<void>((resolve) =>
        s.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read >= MiB && !s.isPaused() && stalledAt === 0) {
            stalledAt = read;
            s.pause();
            resolve();
          }
        }),
      );
      const closed = new Promise((r) => s.once('close', r));
      s.end(grpcFrame('go'));
      await stalled;
      await new Promise((r) => setTimeout(r, 800));
      const aheadWhileStalled = queued - read;
      const stalledRss = await rssOf(pid);
      // Coarse, for the record: what meshlet holds for a stalled 16 MiB stream.
      console.info(
        `slow reader: endpoint ahead by ${(aheadWhileStalled / MiB).toFixed(1)} MiB, meshlet RSS +${((stalledRss - baseRss) / MiB).toFixed(1)} MiB`,
      );
      // Windows on the way: the client's 64 KiB, meshlet's 1 MiB from the endpoint, stream buffers.
      expect(aheadWhileStalled).toBeLessThan(4 * MiB);
      expect(stalledRss - baseRss).toBeLessThan(32 * MiB);
      s.resume();
      await closed;
      session.close();
      // All in one assertion, so a failure shows how the stream ended (its reset code, its error).
      expect({ read, status: trailers?.['grpc-status'], rstCode: s.rstCode, error: streamError }).toEqual({
        read: TOTAL,
        status: '0',
        rstCode: http2.constants.NGHTTP2_NO_ERROR,
        error: undefined,
      });
    });
  });
});
