// A request body node:http cannot parse (a bad chunk size mid-body): one 400 bad_request answer, one access line, one count, the endpoint not blamed.
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { scrapeMetrics, sampleValue } from '../helpers/metrics.ts';
import { collectReply, parseReply } from '../helpers/raw-http.ts';
import { ONE_FAILURE_TRIPS } from '../helpers/one-failure-trips.ts';
import { upstreamState } from '../helpers/upstream-state.ts';

/** Writes `first`, then `second` after `gapMs`; resolves with the reply once the server closes (≤ 5 s). */
async function sendInTwo(port: number, first: string, second: string, gapMs: number): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  const reply = collectReply(socket, { timeoutMs: 5000 });
  socket.write(first);
  setTimeout(() => {
    if (!socket.destroyed) socket.write(second);
  }, gapMs);
  return (await reply).text;
}

describe('a request body with a bad chunk size', () => {
  const suite = meshletSuite((up) => ({
    registry: { type: 'static', endpoints: { parsed: [up.endpoint] } },
    upstreams: { parsed: { retries: { bufferLimitBytes: 16 }, ...ONE_FAILURE_TRIPS } },
  }));

  it.each([
    ['held whole (within bufferLimitBytes)', '/small', '5\r\nhello\r\n'],
    ['streamed (past bufferLimitBytes)', '/large', `20\r\n${'y'.repeat(32)}\r\n`],
  ])(
    'a body %s gets one 400 bad_request line, not a 499',
    async (_kind, path, good) => {
      const { mesh, port } = suite;
      const before = await scrapeMetrics(mesh.admin);
      const linesBefore = mesh.logs.filter((l) => l.msg === 'access').length;
      const reply = await sendInTwo(
        port,
        `POST ${path} HTTP/1.1\r\nHost: parsed\r\nTransfer-Encoding: chunked\r\n\r\n${good}`,
        'ZZ\r\nnot a chunk\r\n',
        100,
      );
      expect(parseReply(reply).status).toBe(400);
      expect(parseReply(reply).headers['x-meshlet-error']).toBe('bad_request');
      await new Promise((r) => setTimeout(r, 100));
      const lines = mesh.logs.filter((l) => l.msg === 'access').slice(linesBefore);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ upstream: 'parsed', path, status: 400, error: 'bad_request' });
      const after = await scrapeMetrics(mesh.admin);
      // Counted once, under the upstream or as unrouted.
      const counted = (m: string, status: string) =>
        ['parsed', 'unrouted']
          .map((upstream) =>
            sampleValue(m, 'meshlet_requests_total', {
              direction: 'outbound',
              upstream,
              status_class: status,
            }),
          )
          .reduce((a, b) => a + b);
      expect(counted(after, '4xx') - counted(before, '4xx')).toBe(1);
      expect(await upstreamState(mesh.admin, 'parsed')).toMatchObject({
        circuitBreaker: 'closed',
        healthy: 1,
      });
      expect(after).not.toMatch(/^meshlet_outlier_ejections_total\{upstream="parsed"/m);
    },
    15_000,
  );
});
