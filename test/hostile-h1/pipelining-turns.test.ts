// Pipelined requests behind one being answered: a slow head there closes the connection (no 408 read as the answer); a connection closed under its answer forwards none of its waiting requests.
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { collectReply } from '../helpers/raw-http.ts';

/** How long the endpoint holds `/hold…` requests, ms. */
const HOLD_MS = 900;
/** The outbound listener's `headersTimeout`, ms. */
const HEADERS_TIMEOUT_MS = 300;

describe('requests pipelined behind one being answered', () => {
  const suite = meshletSuite(
    (up) => ({
      registry: { type: 'static', endpoints: { users: [up.endpoint] } },
      listeners: { outbound: { port: 0, headersTimeout: HEADERS_TIMEOUT_MS } },
      accessLog: { enabled: true, sampleRate: 1 },
    }),
    (req, res) => {
      req.resume();
      if (req.url === '/cut') {
        // Half the promised body, then the connection is gone.
        res.writeHead(200, { 'content-length': '100' });
        res.write('part');
        setTimeout(() => req.socket.destroy(), 50);
        return;
      }
      setTimeout(() => res.end(req.url), req.url!.startsWith('/hold') ? HOLD_MS : 0);
    },
  );

  it('a head that stalls behind an answer closes the connection: no 408 comes first as that answer', async () => {
    const socket = connect(suite.port, '127.0.0.1');
    const reply = collectReply(socket, { timeoutMs: 5000 });
    socket.write('GET /hold-slow-head HTTP/1.1\r\nHost: users\r\n\r\nGET /half HTTP/1.1\r\nHost: users\r\n');
    const { text, timedOut } = await reply;
    // The stalled head is cut after headersTimeout, while /hold-slow-head is still being answered.
    expect(timedOut).toBe(false);
    expect(text).not.toContain('HTTP/1.1 408');
    expect(text).not.toContain('/hold-slow-head');
    expect(suite.up.requests.map((r) => r.url)).not.toContain('/half');
  });

  it('a connection closed under its answer (endpoint cut mid-body): its waiting requests never go upstream; the next connection is served', async () => {
    const socket = connect(suite.port, '127.0.0.1');
    const reply = collectReply(socket, { timeoutMs: 5000 });
    socket.write(
      'GET /cut HTTP/1.1\r\nHost: users\r\n\r\n' +
        'GET /waiting-1 HTTP/1.1\r\nHost: users\r\n\r\n' +
        'GET /waiting-2 HTTP/1.1\r\nHost: users\r\n\r\n',
    );
    const { text, timedOut } = await reply;
    expect(timedOut).toBe(false);
    expect(text).toMatch(/^HTTP\/1\.1 200 [^]*part$/);
    // A waiting request started after the cut would reach the endpoint at once.
    await new Promise((r) => setTimeout(r, 300));
    const urls = suite.up.requests.map((r) => r.url);
    expect(urls).toContain('/cut');
    expect(urls).not.toContain('/waiting-1');
    expect(urls).not.toContain('/waiting-2');
    const next = connect(suite.port, '127.0.0.1');
    const after = collectReply(next, { timeoutMs: 5000 });
    next.write('GET /after HTTP/1.1\r\nHost: users\r\nConnection: close\r\n\r\n');
    expect((await after).text).toMatch(/^HTTP\/1\.1 200 [^]*\/after$/);
  });
});
