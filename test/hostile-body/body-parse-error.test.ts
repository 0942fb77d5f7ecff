// A request body node:http cannot parse (a bad chunk size mid-body): one 400 bad_request answer, one access line, one count, the endpoint not blamed.
import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

/** Writes `first`, then `second` after `gapMs`; resolves with the reply once the server closes. */
function sendInTwo(port: number, first: string, second: string, gapMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    const cap = setTimeout(() => socket.destroy(), 5000);
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    socket.on('close', () => {
      clearTimeout(cap);
      resolve(text);
    });
    socket.write(first);
    setTimeout(() => {
      if (!socket.destroyed) socket.write(second);
    }, gapMs);
  });
}

/** The value of a counter series in Prometheus text, 0 when absent. */
function series(metrics: string, prefix: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('a request body with a bad chunk size', () => {
  let up: TestUpstream;
  let mesh: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    up = await startUpstream();
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { parsed: [up.endpoint] } },
      upstreams: {
        parsed: {
          retries: { bufferLimitBytes: 16 },
          circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
          outlierDetection: { consecutiveGatewayFailure: 1, consecutive5xx: 1, maxEjectionPercent: 100 },
        },
      },
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh?.close();
    await up?.close();
  });

  it.each([
    ['held whole (within bufferLimitBytes)', '/small', '5\r\nhello\r\n'],
    ['streamed (past bufferLimitBytes)', '/large', `20\r\n${'y'.repeat(32)}\r\n`],
  ])(
    'a body %s gets one 400 bad_request line, not a 499',
    async (_kind, path, good) => {
      const before = await (await request(`${mesh.admin}/metrics`)).body.text();
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
      const after = await (await request(`${mesh.admin}/metrics`)).body.text();
      const counted = (m: string, status: string) =>
        series(m, `meshlet_requests_total{direction="outbound",upstream="parsed",status_class="${status}"}`) +
        series(
          m,
          `meshlet_requests_total{direction="outbound",upstream="unrouted",status_class="${status}"}`,
        );
      expect(counted(after, '4xx') - counted(before, '4xx')).toBe(1);
      const state = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
        upstreams: Record<string, { circuitBreaker: string; healthy: number }>;
      };
      expect(state.upstreams.parsed).toMatchObject({ circuitBreaker: 'closed', healthy: 1 });
      expect(after).not.toMatch(/^meshlet_outlier_ejections_total\{upstream="parsed"/m);
    },
    15_000,
  );
});
