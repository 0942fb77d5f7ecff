// A body of a million 1-byte chunks sent at full speed is read to the end: bodyTimeout measures a stall between bytes, never the time a fast body takes to parse.
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { collectReply, parseReply } from '../helpers/raw-http.ts';

const CHUNKS = 1_000_000;
const BODY_TIMEOUT_MS = 2000;

/** Sends a chunked POST of `CHUNKS` 1-byte chunks to `host` as fast as the socket takes them; resolves with the reply. */
async function tinyChunks(port: number, host: string): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  const reply = collectReply(socket, { timeoutMs: 18_000 });
  socket.write(
    `POST /tiny HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`,
  );
  const block = Buffer.from('1\r\nx\r\n'.repeat(10_000));
  let sent = 0;
  const more = (): void => {
    while (sent < CHUNKS) {
      sent += 10_000;
      if (!socket.write(block)) {
        socket.once('drain', more);
        return;
      }
    }
    socket.write('0\r\n\r\n');
  };
  more();
  return (await reply).text;
}

describe('a body of a million 1-byte chunks', () => {
  /** Per request the upstream served: bytes, and the pieces they came in. */
  const received: { bytes: number; pieces: number }[] = [];
  const suite = meshletSuite(
    (up) => ({
      listeners: { outbound: { port: 0, bodyTimeout: BODY_TIMEOUT_MS } },
      registry: { type: 'static', endpoints: { held: [up.endpoint], streamed: [up.endpoint] } },
      upstreams: {
        held: { timeouts: { request: '15s' }, retries: { bufferLimitBytes: 2 * 1024 * 1024 } },
        streamed: { timeouts: { request: '15s' }, retries: { bufferLimitBytes: 1024 } },
      },
      accessLog: { enabled: false },
    }),
    (req, res) => {
      let size = 0;
      let pieces = 0;
      req.on('data', (d: Buffer) => {
        size += d.length;
        pieces++;
      });
      req.on('end', () => {
        received.push({ bytes: size, pieces });
        res.end(`got ${size}`);
      });
    },
  );

  it.each(['held', 'streamed'])(
    'is served whole when %s, not cut as stalled',
    async (host) => {
      const reply = parseReply(await tinyChunks(suite.port, host));
      expect(reply.headers['x-meshlet-error']).toBeUndefined();
      expect(reply.status).toBe(200);
      expect(reply.body).toBe(`got ${CHUNKS}`);
      // Passed on in what arrived together (one socket read), not a write upstream per 1-byte chunk:
      // those took ~15 s here, while meshlet held the client's socket paused.
      const served = received.at(-1)!;
      expect(served.bytes).toBe(CHUNKS);
      expect(served.pieces).toBeLessThan(10_000);
    },
    19_000,
  );
});
