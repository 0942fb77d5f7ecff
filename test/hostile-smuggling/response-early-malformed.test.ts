// A response malformed right after its head (in the same read): the client gets a 502, not a closed connection with no answer, and the endpoint is blamed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { metricValue } from '../helpers/metrics.ts';
import {
  clientRequest,
  h2Data,
  h2Headers,
  honestBody,
  HOSTILE_PATH,
  type ScriptedEndpoint,
  startH1Endpoint,
  startH2Endpoint,
} from './response-endpoints.ts';

interface Row {
  name: string;
  /** Starts the endpoint that answers `/hostile` with the malformed response. */
  start: () => Promise<ScriptedEndpoint>;
  protocol: 'http1' | 'http2';
  /** What the follow-up request's honest answer says. */
  next: string;
}

const h1 = (bytes: string) => () => startH1Endpoint({ bytes });
const h2 = (frames: (id: number) => Buffer[]) => () => startH2Endpoint(frames);

const rows: Row[] = [
  {
    name: 'HTTP/1.1: a chunk size that is not hex',
    start: h1('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n'),
    protocol: 'http1',
    next: honestBody('/next', 2),
  },
  {
    name: 'HTTP/1.1: a negative chunk size',
    start: h1('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-2\r\nhi\r\n0\r\n\r\n'),
    protocol: 'http1',
    next: honestBody('/next', 2),
  },
  {
    name: 'HTTP/1.1: a chunk shorter than its data',
    start: h1('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nhi\r\n0\r\n\r\n'),
    protocol: 'http1',
    next: honestBody('/next', 2),
  },
  {
    name: 'HTTP/2: DATA past the content-length',
    start: h2((id) => [
      h2Headers(id, [
        [':status', '200'],
        ['content-length', '2'],
      ]),
      h2Data(id, 'hiHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nSECRET'),
    ]),
    protocol: 'http2',
    next: honestBody('stream 2', 2),
  },
  {
    name: 'HTTP/2: DATA ending short of the content-length',
    start: h2((id) => [
      h2Headers(id, [
        [':status', '200'],
        ['content-length', '10'],
      ]),
      h2Data(id, 'hi'),
    ]),
    protocol: 'http2',
    next: honestBody('stream 2', 1),
  },
  {
    name: 'HTTP/2: DATA on a 204',
    start: h2((id) => [h2Headers(id, [[':status', '204']]), h2Data(id, 'SECRET')]),
    protocol: 'http2',
    next: honestBody('stream 2', 2),
  },
];

describe('a response malformed in the read that carried its head', () => {
  const endpoints: ScriptedEndpoint[] = [];
  let mesh: InProcessMeshlet;
  let port: number;
  beforeAll(async () => {
    for (const row of rows) endpoints.push(await row.start());
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: Object.fromEntries(rows.map((_, i) => [`m${i}`, [endpoints[i]!.endpoint]])),
      },
      upstreams: Object.fromEntries(
        rows.map((row, i) => [
          `m${i}`,
          { protocol: row.protocol, retries: { attempts: 1 }, timeouts: { perTry: '2s', idle: '400ms' } },
        ]),
      ),
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh?.close();
    for (const e of endpoints) await e.close();
  });

  it.each(rows.map((row, i) => ({ ...row, i })))(
    '$name: 502 upstream_unreachable, counted as a reset of the endpoint; the next client gets its own answer',
    async (row) => {
      const upstream = `m${row.i}`;
      const got = await clientRequest(port, HOSTILE_PATH, upstream);
      expect(got.status, JSON.stringify(got.raw)).toBe(502);
      expect(got.headers['x-meshlet-error']).toBe('upstream_unreachable');
      expect(got.complete).toBe(true);
      expect(got.raw).not.toContain('SECRET');
      expect(
        await metricValue(mesh.admin, 'meshlet_upstream_attempts_total', { upstream, result: 'reset' }),
      ).toBe(1);
      const next = await clientRequest(port, '/next', upstream);
      expect(next.status, next.raw).toBe(200);
      expect(next.body).toBe(row.next);
    },
  );
});
