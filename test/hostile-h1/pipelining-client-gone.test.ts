// A client that leaves while its pipelined requests wait: the request being answered is cancelled upstream, the waiting ones never go, and nothing stays counted.
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { metricValue } from '../helpers/metrics.ts';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { rawExchange } from '../helpers/raw-http.ts';

/** How long the endpoint holds each `/hold…` request before answering, ms. */
const HOLD_MS = 2000;
/** How long meshlet has to notice a client that left and cancel its request upstream, ms. */
const NOTICE_MS = 1000;

/** How a client leaves: half-close (FIN, still reading), close (FIN, then a reset to any answer), or reset (RST). */
const LEAVES = {
  'half-closes (FIN)': (s: Socket) => s.end(),
  'closes (FIN)': (s: Socket) => s.destroy(),
  'resets (RST)': (s: Socket) => s.resetAndDestroy(),
};

/** Resolves once `done()` holds, checking every 20 ms; rejects with `what` after `ms`. */
async function waitFor(done: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** How the pipelined requests are written: all at once (parsed from the connection's first read), or the first alone. */
const WRITES = {
  'written at once': false,
  'the rest written later': true,
};

/**
 * Each case has its own endpoint and meshlet: a request left running by one is not another's trouble,
 * so the cases run side by side.
 */
const CASES = Object.entries(LEAVES).flatMap(([how, leave]) =>
  Object.entries(WRITES).map(([written, split]) => ({ how, leave, written, split })),
);

describe.concurrent.each(CASES)(
  'a client that $how while its pipelined requests, $written, wait',
  ({ leave, split }) => {
    /** When the endpoint saw each request cancelled before it answered, by URL (ms since the epoch). */
    const cancelled = new Map<string, number>();
    const suite = meshletSuite(
      (up) => ({
        registry: { type: 'static', endpoints: { users: [up.endpoint] } },
        // One request at a time to the endpoint: a slot kept by a request whose client left would
        // make the next connection's request a 503 `overloaded`.
        upstreams: { users: { limits: { maxConcurrent: 1 } } },
        accessLog: { enabled: false },
      }),
      (req, res) => {
        req.resume();
        const timer = setTimeout(() => res.end(req.url), req.url!.startsWith('/hold') ? HOLD_MS : 0);
        res.on('close', () => {
          if (res.writableFinished) return;
          clearTimeout(timer);
          cancelled.set(req.url!, Date.now());
        });
      },
    );

    it('the one being answered is cancelled upstream, the waiting ones are never sent, nothing leaks', async () => {
      const urls = ['/hold-1', '/hold-2', '/hold-3'];
      const heads = urls.map((u) => `GET ${u} HTTP/1.1\r\nHost: users\r\n\r\n`);
      const socket = connect(suite.port, '127.0.0.1');
      socket.on('error', () => {});
      socket.write(split ? heads[0]! : heads.join(''));
      const seen = () => suite.up.requests.map((r) => r.url);
      await waitFor(() => seen().includes(urls[0]!), NOTICE_MS, `${urls[0]} reaching the endpoint`);
      if (split) {
        socket.write(heads[1]! + heads[2]!);
        // The two heads read and queued behind the first.
        await new Promise((r) => setTimeout(r, 100));
      }
      leave(socket);
      const leftAt = Date.now();

      // Past the time the first answer would have come: a waiting request started then would be seen.
      // Before: the first request ran its HOLD_MS to the end, then the second was sent (FIN), or the
      // first ran to the end and the rest were dropped (RST).
      await new Promise((r) => setTimeout(r, HOLD_MS + 300));
      expect(seen()).toEqual([urls[0]]);
      expect(cancelled.has(urls[0]!)).toBe(true);
      expect(cancelled.get(urls[0]!)! - leftAt).toBeLessThan(NOTICE_MS);

      // Nothing stays counted: no request active, no connection open, the endpoint's one slot free.
      const admin = suite.mesh.admin;
      await waitFor(
        async () =>
          (await metricValue(admin, 'meshlet_listener_connections', { listener: 'outbound' })) === 0,
        NOTICE_MS,
        'meshlet_listener_connections{listener="outbound"} back to 0',
      );
      expect(
        await metricValue(admin, 'meshlet_requests_active', { direction: 'outbound', upstream: 'users' }),
      ).toBe(0);
      const next = await rawExchange(
        suite.port,
        'GET /after HTTP/1.1\r\nHost: users\r\nConnection: close\r\n\r\n',
      );
      expect(next).toMatch(/^HTTP\/1\.1 200 [^]*\/after$/);
    }, 15_000);
  },
);
