// A request body still arriving when the request timeout (`timeouts.request`) runs out: the client gets 408 at once, the endpoint is never blamed or sent a part.
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { scrapeMetrics } from '../helpers/metrics.ts';
import { collectReply, parseReply } from '../helpers/raw-http.ts';
import { ONE_FAILURE_TRIPS } from '../helpers/one-failure-trips.ts';
import { upstreamState } from '../helpers/upstream-state.ts';

const REQUEST_TIMEOUT_MS = 800;
const BODY_TIMEOUT_MS = 2000;

/** Writes `head`, then one body byte every `everyMs` until the socket closes; resolves with the reply and when it came. */
async function trickle(
  port: number,
  head: string,
  byte: string,
  everyMs: number,
): Promise<{ status: number; error: string | undefined; repliedAfter: number }> {
  const socket: Socket = connect(port, '127.0.0.1');
  const startedAt = performance.now();
  let repliedAfter = -1;
  socket.once('data', () => (repliedAfter = performance.now() - startedAt));
  // Never answered: given up after 4 s (the test then fails on the status).
  const collected = collectReply(socket, { timeoutMs: 4000 });
  socket.write(head);
  const timer = setInterval(() => {
    if (socket.destroyed || !socket.writable) clearInterval(timer);
    else socket.write(byte);
  }, everyMs);
  const reply = parseReply((await collected).text);
  clearInterval(timer);
  return { status: reply.status, error: reply.headers['x-meshlet-error'], repliedAfter };
}

describe('a request body slower than the request timeout', () => {
  /** Requests the upstream saw whose body never completed. */
  const cut: string[] = [];
  const suite = meshletSuite(
    (up) => ({
      listeners: { outbound: { port: 0, bodyTimeout: BODY_TIMEOUT_MS } },
      registry: { type: 'static', endpoints: { slowup: [up.endpoint], pertry: [up.endpoint] } },
      upstreams: {
        pertry: {
          timeouts: { request: '5s', perTry: 300 },
          retries: { bufferLimitBytes: 1024 },
          outlierDetection: { consecutiveGatewayFailure: 1, maxEjectionPercent: 100 },
        },
        // Any failure blamed on the endpoint would show: one opens the breaker, one ejects.
        slowup: {
          timeouts: { request: REQUEST_TIMEOUT_MS },
          retries: { bufferLimitBytes: 64 * 1024 },
          ...ONE_FAILURE_TRIPS,
        },
      },
    }),
    (req, res) => {
      req.resume();
      req.on('close', () => {
        if (!req.complete) cut.push(req.url ?? '');
      });
      req.on('end', () => res.end('ok'));
    },
  );

  it('gets 408 request_timeout when the deadline passes mid-upload, and the endpoint is not blamed', async () => {
    const { up, mesh, port } = suite;
    const uploads = [
      trickle(port, 'POST /cl HTTP/1.1\r\nHost: slowup\r\nContent-Length: 100\r\n\r\n', 'x', 150),
      trickle(
        port,
        'POST /chunked HTTP/1.1\r\nHost: slowup\r\nTransfer-Encoding: chunked\r\n\r\n',
        '1\r\nx\r\n',
        150,
      ),
      trickle(port, 'POST /streamed HTTP/1.1\r\nHost: slowup\r\nContent-Length: 70000\r\n\r\n', 'x', 150),
      trickle(
        port,
        'POST /caller HTTP/1.1\r\nHost: slowup\r\nx-meshlet-timeout-ms: 400\r\nContent-Length: 100\r\n\r\n',
        'x',
        150,
      ),
    ];
    const results = await Promise.all(uploads);
    for (const r of results) {
      expect(r.status).toBe(408);
      expect(r.error).toBe('request_timeout');
      expect(r.repliedAfter).toBeLessThan(REQUEST_TIMEOUT_MS + 700);
    }
    expect(results[3]!.repliedAfter).toBeLessThan(400 + 700);
    // Of the bodies read whole first, nothing reached the endpoint; the one streamed as it came
    // (past bufferLimitBytes) was cut there, never passed on as if complete.
    await new Promise((r) => setTimeout(r, 100));
    expect(up.requests.map((r) => r.url)).toEqual(['/streamed']);
    expect(cut).toEqual(['/streamed']);
    const metrics = await scrapeMetrics(mesh.admin);
    expect(metrics).toMatch(/^meshlet_circuit_breaker_state\{upstream="slowup",state="closed"\} 1$/m);
    expect(metrics).not.toMatch(/^meshlet_circuit_breaker_transitions_total\{upstream="slowup"/m);
    expect(metrics).not.toMatch(
      /^meshlet_local_replies_total\{[^}]*upstream="slowup",code="upstream_timeout"/m,
    );
    expect(metrics).not.toMatch(/^meshlet_outlier_ejections_total\{upstream="slowup"/m);
    expect(metrics).not.toMatch(/^meshlet_upstream_attempts_total\{upstream="slowup"/m);
    expect(await upstreamState(mesh.admin, 'slowup')).toMatchObject({ circuitBreaker: 'closed', healthy: 1 });
    const lines = mesh.logs.filter((l) => l.msg === 'access' && l.upstream === 'slowup');
    expect(lines.map((l) => [l.path, l.status, l.error, l.attempts]).sort()).toEqual([
      ['/caller', 408, 'request_timeout', 0],
      ['/chunked', 408, 'request_timeout', 0],
      ['/cl', 408, 'request_timeout', 0],
      ['/streamed', 408, 'request_timeout', 1],
    ]);
    // The upstream still serves a prompt request.
    const ok = await request(`${mesh.outbound}/fine`, {
      method: 'POST',
      body: 'abc',
      headers: { host: 'slowup' },
    });
    expect(ok.statusCode).toBe(200);
    await ok.body.dump();
    expect(up.requests.map((r) => r.url)).toEqual(['/streamed', '/fine']);
  }, 15_000);

  it('a streamed body slower than timeouts.perTry but within timeouts.request is served: the per-try timeout starts once it arrived', async () => {
    const { up, mesh, port } = suite;
    const before = up.requests.length;
    const socket: Socket = connect(port, '127.0.0.1');
    const reply = collectReply(socket, { timeoutMs: 4000, until: (text) => text.includes('\r\n\r\nok') });
    // 3000 bytes over the 1024-byte replay buffer: streamed, in three parts 400 ms apart.
    socket.write('POST /parts HTTP/1.1\r\nHost: pertry\r\nContent-Length: 3000\r\n\r\n');
    for (let i = 0; i < 3; i++) {
      socket.write('p'.repeat(1000));
      await new Promise((r) => setTimeout(r, 400));
    }
    const answer = parseReply((await reply).text);
    expect(answer.headers['x-meshlet-error']).toBeUndefined();
    expect(answer.status).toBe(200);
    expect(up.requests.slice(before).map((r) => r.url)).toEqual(['/parts']);
    expect(await upstreamState(mesh.admin, 'pertry')).toMatchObject({ healthy: 1 });
  }, 10_000);
});
