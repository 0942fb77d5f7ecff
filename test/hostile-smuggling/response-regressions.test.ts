// Regression table: hostile or broken endpoint responses through the outbound listener, each followed by another client's request that must get its own answer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import {
  clientRequest,
  h2Data,
  h2Headers,
  type H1Script,
  honestBody,
  HOSTILE_PATH,
  type ScriptedEndpoint,
  startH1Endpoint,
  startH2Endpoint,
} from './response-endpoints.ts';

/** A whole response an attacker would like another client to read as its own. */
const INJECTED = 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nSECRET';
const OK_HI = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi';

interface Row {
  name: string;
  /** What the hostile client sees: its status (502 always with x-meshlet-error upstream_unreachable). */
  status: number;
  /** The decoded body it reads (not checked for a 502). */
  body?: string;
  /** The reply is cut (no content-length's worth, no last chunk) and its connection closed. */
  cut?: boolean;
  /** The client's head only (HEAD, 204, 304: no body whatever the length says). */
  method?: string;
  headOnly?: boolean;
  /** The connection (1-based) the follow-up request is served on: 2 means the misbehaving one was not reused. */
  nextConnection: 1 | 2;
}

const h1Rows: (Row & { script: H1Script })[] = [
  {
    name: 'a second response right after the body, in the same write',
    script: { bytes: OK_HI + INJECTED },
    status: 200,
    body: 'hi',
    nextConnection: 2,
  },
  {
    name: 'a second response 30 ms after the first, before any next request',
    script: { bytes: OK_HI, later: INJECTED },
    status: 200,
    body: 'hi',
    nextConnection: 2,
  },
  {
    name: 'content-length with transfer-encoding: chunked',
    script: {
      bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'transfer-encoding: chunked, then a content-length covering a smuggled response',
    script: {
      bytes: `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: ${12 + INJECTED.length}\r\n\r\n2\r\nhi\r\n0\r\n\r\n${INJECTED}`,
    },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'two different content-lengths',
    script: {
      bytes: `HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: ${2 + INJECTED.length}\r\n\r\nhi${INJECTED}`,
    },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'two equal content-lengths',
    script: { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nhi' },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'a content-length list',
    script: { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nhi' },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'a signed content-length',
    script: { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nhi' },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'a content-length shorter than the body',
    script: { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhiTHERE' },
    status: 200,
    body: 'hi',
    nextConnection: 2,
  },
  {
    name: 'a content-length longer than the body, then the close',
    script: { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\nhi', closeAfterMs: 20 },
    status: 200,
    cut: true,
    nextConnection: 2,
  },
  {
    name: 'transfer-encoding: chunked twice',
    script: {
      bytes:
        'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'transfer-encoding: identity with a content-length',
    script: { bytes: 'HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\ncontent-length: 2\r\n\r\nhi' },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'transfer-encoding: chunked, identity (chunked not last)',
    script: { bytes: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, identity\r\n\r\nhi', closeAfterMs: 0 },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'transfer-encoding folded onto a second line (obs-fold)',
    script: { bytes: 'HTTP/1.1 200 OK\r\ntransfer-encoding:\r\n chunked\r\ncontent-length: 2\r\n\r\nhi' },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'a space before the colon of content-length',
    script: { bytes: `HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nhi${INJECTED}` },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'bare LF line ends',
    script: { bytes: 'HTTP/1.1 200 OK\ncontent-length: 2\n\nhi' },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'a 204 with a content-length and a body',
    script: { bytes: 'HTTP/1.1 204 No Content\r\ncontent-length: 6\r\n\r\nSECRET' },
    status: 204,
    headOnly: true,
    nextConnection: 2,
  },
  {
    name: 'a 204 followed by a whole response',
    script: { bytes: `HTTP/1.1 204 No Content\r\n\r\n${INJECTED}` },
    status: 204,
    headOnly: true,
    nextConnection: 2,
  },
  {
    name: 'a 304 with a content-length and a body',
    script: { bytes: `HTTP/1.1 304 Not Modified\r\ncontent-length: 6\r\n\r\n${INJECTED}` },
    status: 304,
    headOnly: true,
    nextConnection: 2,
  },
  {
    name: 'an answer to HEAD with a content-length and a body',
    method: 'HEAD',
    script: { bytes: `HTTP/1.1 200 OK\r\ncontent-length: ${INJECTED.length}\r\n\r\n${INJECTED}` },
    status: 200,
    nextConnection: 2,
  },
  {
    name: 'an answer to HEAD without a length, and a body',
    method: 'HEAD',
    script: { bytes: `HTTP/1.1 200 OK\r\n\r\n${INJECTED}` },
    status: 200,
    nextConnection: 2,
  },
  {
    name: 'a 102 with a content-length and a body before the 200',
    script: { bytes: `HTTP/1.1 102 Processing\r\ncontent-length: 6\r\n\r\nSECRET${OK_HI}` },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'a 103 naming a content-length (1xx has no body), then the 200',
    script: { bytes: `HTTP/1.1 103 Early Hints\r\ncontent-length: 6\r\n\r\n${OK_HI}` },
    status: 200,
    body: 'hi',
    nextConnection: 1,
  },
  {
    name: 'a 101 to a request that asked for no upgrade',
    script: {
      bytes: `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n${INJECTED}`,
    },
    status: 502,
    nextConnection: 2,
  },
  {
    name: 'HTTP/1.0 with connection: keep-alive and no length (body until the close)',
    script: { bytes: 'HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\nhi', closeAfterMs: 50 },
    status: 200,
    body: 'hi',
    nextConnection: 2,
  },
  {
    name: 'HTTP/1.0 keep-alive without length and a response after it: all of it is this body',
    script: { bytes: `HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\nhi${INJECTED}`, closeAfterMs: 50 },
    status: 200,
    body: `hi${INJECTED}`,
    nextConnection: 2,
  },
  {
    name: 'no length, no connection: close (body until the close)',
    script: { bytes: 'HTTP/1.1 200 OK\r\n\r\nhi', closeAfterMs: 50 },
    status: 200,
    body: 'hi',
    nextConnection: 2,
  },
  {
    name: 'no length and the endpoint never closes (cut at the idle timeout)',
    script: { bytes: 'HTTP/1.1 200 OK\r\n\r\nhi' },
    status: 200,
    body: 'hi',
    cut: true,
    nextConnection: 2,
  },
  {
    name: 'connection: content-length (a framing header named hop-by-hop)',
    script: { bytes: 'HTTP/1.1 200 OK\r\nconnection: content-length\r\ncontent-length: 2\r\n\r\nhi' },
    status: 200,
    body: 'hi',
    nextConnection: 1,
  },
];

type Fields = readonly (readonly [string, string])[];
const h2Rows: (Row & { frames: (id: number) => Buffer[] })[] = [
  ...(
    [
      ['transfer-encoding: chunked', [['transfer-encoding', 'chunked']]],
      [
        'transfer-encoding with content-length',
        [
          ['transfer-encoding', 'chunked'],
          ['content-length', '2'],
        ],
      ],
      [
        'connection: keep-alive',
        [
          ['connection', 'keep-alive'],
          ['content-length', '2'],
        ],
      ],
      [
        'keep-alive',
        [
          ['keep-alive', 'timeout=5'],
          ['content-length', '2'],
        ],
      ],
      [
        'upgrade',
        [
          ['upgrade', 'h2c'],
          ['content-length', '2'],
        ],
      ],
      [
        'proxy-connection',
        [
          ['proxy-connection', 'close'],
          ['content-length', '2'],
        ],
      ],
      ['an upper-case field name', [['Content-Length', '2']]],
      [
        'two different content-lengths',
        [
          ['content-length', '2'],
          ['content-length', '8'],
        ],
      ],
    ] as [string, Fields][]
  ).map(([what, fields]): Row & { frames: (id: number) => Buffer[] } => ({
    name: `HTTP/2 ${what} in a response`,
    frames: (id) => [h2Headers(id, [[':status', '200'], ...fields]), h2Data(id, 'hi')],
    status: 502,
    nextConnection: 1,
  })),
  {
    name: 'HTTP/2 content-length: 5 and no DATA',
    frames: (id) => [
      h2Headers(
        id,
        [
          [':status', '200'],
          ['content-length', '5'],
        ],
        true,
      ),
    ],
    status: 502,
    nextConnection: 1,
  },
  {
    name: 'HTTP/2 204 with content-length: 6 and DATA',
    frames: (id) => [
      h2Headers(id, [
        [':status', '204'],
        ['content-length', '6'],
      ]),
      h2Data(id, 'SECRET'),
    ],
    status: 502,
    nextConnection: 1,
  },
  {
    name: 'HTTP/2 304 with content-length: 6 (kept, no body)',
    frames: (id) => [
      h2Headers(
        id,
        [
          [':status', '304'],
          ['content-length', '6'],
        ],
        true,
      ),
    ],
    status: 304,
    headOnly: true,
    nextConnection: 1,
  },
  {
    name: 'HTTP/2 te: trailers in a response (dropped)',
    frames: (id) => [
      h2Headers(id, [
        [':status', '200'],
        ['te', 'trailers'],
        ['content-length', '2'],
      ]),
      h2Data(id, 'hi'),
    ],
    status: 200,
    body: 'hi',
    nextConnection: 1,
  },
];

/** Checks what the hostile client read against its row: a 502 is meshlet's own upstream_unreachable, nothing injected reached it. */
function expectRow(row: Row, got: Awaited<ReturnType<typeof clientRequest>>): void {
  expect(got.status, got.raw).toBe(row.status);
  if (row.status === 502) {
    expect(got.headers['x-meshlet-error']).toBe('upstream_unreachable');
    expect(got.complete).toBe(true);
  } else if (row.body !== undefined) expect(got.body).toBe(row.body);
  if (row.cut === true) expect(got.complete, got.raw).toBe(false);
  else expect(got.complete, got.raw).toBe(true);
  // One consistent framing: never both, and a HEAD/204/304 has no body at all.
  expect(got.headers['content-length'] !== undefined && got.headers['transfer-encoding'] !== undefined).toBe(
    false,
  );
  if (row.method !== undefined || row.headOnly === true)
    expect(got.raw.endsWith('\r\n\r\n'), got.raw).toBe(true);
  if (row.body === undefined || !row.body.includes('SECRET')) expect(got.raw).not.toContain('SECRET');
}

describe('hostile HTTP/1.1 endpoint responses: the client gets its answer or a 502, the next client its own', () => {
  const endpoints: ScriptedEndpoint[] = [];
  let mesh: InProcessMeshlet;
  let port: number;
  beforeAll(async () => {
    for (const row of h1Rows) endpoints.push(await startH1Endpoint(row.script));
    const names = h1Rows.map((_, i) => `r${i}`);
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: Object.fromEntries(names.map((n, i) => [n, [endpoints[i]!.endpoint]])),
      },
      upstreams: Object.fromEntries(
        names.map((n) => [n, { retries: { attempts: 1 }, timeouts: { perTry: '2s', idle: '400ms' } }]),
      ),
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh?.close();
    for (const e of endpoints) await e.close();
  });

  it.each(h1Rows.map((row, i) => ({ ...row, i })))('$name', async (row) => {
    const host = `r${row.i}`;
    const got = await clientRequest(port, HOSTILE_PATH, host, { method: row.method, headOnly: row.headOnly });
    expectRow(row, got);
    // Another client, after the endpoint had its say: its own answer, on the connection the row expects.
    await new Promise((r) => setTimeout(r, 60));
    const next = await clientRequest(port, '/next', host);
    expect(next.status, next.raw).toBe(200);
    expect(next.body).toBe(honestBody('/next', row.nextConnection));
    expect(endpoints[row.i]!.connections()).toBe(row.nextConnection);
  });
});

describe('hostile HTTP/2 endpoint responses to an HTTP/1.1 client', () => {
  const endpoints: ScriptedEndpoint[] = [];
  let mesh: InProcessMeshlet;
  let port: number;
  beforeAll(async () => {
    for (const row of h2Rows) endpoints.push(await startH2Endpoint(row.frames));
    const names = h2Rows.map((_, i) => `s${i}`);
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: Object.fromEntries(names.map((n, i) => [n, [endpoints[i]!.endpoint]])),
      },
      upstreams: Object.fromEntries(
        names.map((n) => [
          n,
          { protocol: 'http2', retries: { attempts: 1 }, timeouts: { perTry: '2s', idle: '400ms' } },
        ]),
      ),
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh?.close();
    for (const e of endpoints) await e.close();
  });

  it.each(h2Rows.map((row, i) => ({ ...row, i })))('$name', async (row) => {
    const host = `s${row.i}`;
    const got = await clientRequest(port, HOSTILE_PATH, host, { headOnly: row.headOnly });
    expectRow(row, got);
    if (row.name.includes('te: trailers')) expect(got.headers.te).toBeUndefined();
    if (row.status === 304) expect(got.headers['content-length']).toBe('6');
    const next = await clientRequest(port, '/next', host);
    expect(next.status, next.raw).toBe(200);
    expect(next.body).toBe(honestBody('stream 2', row.nextConnection));
  });
});
