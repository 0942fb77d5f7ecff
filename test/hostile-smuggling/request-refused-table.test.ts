// Regression table of request framing that meshlet already refuses or normalises, over HTTP/1.1 and HTTP/2 on the outbound, gateway and inbound listeners: what the client gets and exactly what reaches the endpoint.
import { describe, expect, it } from 'vitest';
import { data, headers, literal, RawH2 } from '../hostile-h2/h2-frames.ts';
import type { SeenRequest } from './recording-endpoint.ts';
import { exchange, listeners, smugglingMesh, type SmugglingMesh } from './smuggling-mesh.ts';

/** `HOST` in a row stands for the listener's authority. */
const follower = 'GET /follower HTTP/1.1\r\nHost: HOST\r\n\r\n';
const inner = 'GET /inner HTTP/1.1\r\nHost: inner\r\n\r\n';

/** HTTP/1.1 rows node:http (llhttp, strict) refuses with 400 before meshlet forwards anything; a request pipelined behind is not forwarded either. */
const refusedH1: [name: string, request: string][] = [
  [
    'Content-Length with Transfer-Encoding',
    `POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
  ],
  [
    'two equal Content-Length',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc',
  ],
  [
    'two different Content-Length',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde',
  ],
  ['Content-Length +3', 'POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: +3\r\n\r\nabc'],
  ['Content-Length 1 3', 'POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: 1 3\r\n\r\nabc'],
  ['Content-Length list 3, 3', 'POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: 3, 3\r\n\r\nabc'],
  [
    'Content-Length past 2^64',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: 99999999999999999999\r\n\r\nabc',
  ],
  ['Content-Length -1', 'POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: -1\r\n\r\nabc'],
  [
    'Transfer-Encoding chunked, identity',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  ],
  [
    'Transfer-Encoding xchunked',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  ],
  [
    'two Transfer-Encoding chunked',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  ],
  [
    'HTTP/1.0 with Content-Length and Transfer-Encoding',
    'POST /a HTTP/1.0\r\nHost: HOST\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc',
  ],
  [
    'chunk size ffffffffffffffff1',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nabc\r\n0\r\n\r\n',
  ],
  [
    'chunk size -3',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n',
  ],
  [
    'chunk size 0x3',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n',
  ],
  [
    'chunk extension ended by a bare LF',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\nabc\r\n0\r\n\r\n',
  ],
  [
    'chunk extension with a bare CR',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n0\r\n\r\n',
  ],
  [
    'chunk data ended by a bare LF',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n',
  ],
  ['obs-fold', 'GET /a HTTP/1.1\r\nHost: HOST\r\nX-A: a\r\n b\r\n\r\n'],
  [
    'obs-fold hiding Transfer-Encoding',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc',
  ],
  ['bare LF line ends', 'GET /a HTTP/1.1\nHost: HOST\nX-A: a\n\n'],
  ['a bare LF inside the head', 'GET /a HTTP/1.1\r\nHost: HOST\r\nX-A: a\nX-B: b\r\n\r\n'],
  ['a bare CR inside the head', 'GET /a HTTP/1.1\r\nHost: HOST\r\nX-A: a\rX-B: b\r\n\r\n'],
  ['NUL in a value', 'GET /a HTTP/1.1\r\nHost: HOST\r\nX-A: a\x00b\r\n\r\n'],
  ['0x01 in a value', 'GET /a HTTP/1.1\r\nHost: HOST\r\nX-A: a\x01b\r\n\r\n'],
  ['DEL in a value', 'GET /a HTTP/1.1\r\nHost: HOST\r\nX-A: a\x7fb\r\n\r\n'],
  ['NUL in a name', 'GET /a HTTP/1.1\r\nHost: HOST\r\nX-\x00A: a\r\n\r\n'],
  ['a space before the colon', 'GET /a HTTP/1.1\r\nHost: HOST\r\nX-A : a\r\n\r\n'],
  [
    'Transfer-Encoding with a space before the colon',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc',
  ],
  ['two Host headers', 'GET /a HTTP/1.1\r\nHost: HOST\r\nHost: HOST\r\n\r\n'],
  ['no Host in HTTP/1.1', 'GET /a HTTP/1.1\r\n\r\n'],
];

/** HTTP/1.1 rows meshlet normalises: the endpoint gets exactly these requests (line, body), each framed by one Content-Length. */
const normalisedH1: [name: string, request: string, expected: [line: string, body: string][]][] = [
  [
    'Content-Length 003',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: 003\r\n\r\nabc',
    [['POST /a HTTP/1.1', 'abc']],
  ],
  [
    'Content-Length with a trailing space',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: 3 \r\n\r\nabc',
    [['POST /a HTTP/1.1', 'abc']],
  ],
  [
    'a chunk extension',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\n\r\n',
    [['POST /a HTTP/1.1', 'abc']],
  ],
  [
    'chunked trailers',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n',
    [['POST /a HTTP/1.1', 'abc']],
  ],
  [
    'Connection: transfer-encoding',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    [['POST /a HTTP/1.1', 'abc']],
  ],
  [
    'a GET whose Content-Length body holds a request',
    `GET /a HTTP/1.1\r\nHost: HOST\r\nContent-Length: ${inner.length}\r\n\r\n${inner}`,
    [['GET /a HTTP/1.1', inner]],
  ],
  [
    'a GET with a chunked body',
    'GET /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    [['GET /a HTTP/1.1', 'abc']],
  ],
  [
    'Expect: 100-continue, then the body',
    'POST /a HTTP/1.1\r\nHost: HOST\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc',
    [['POST /a HTTP/1.1', 'abc']],
  ],
  [
    'a chunked body, then a pipelined GET',
    `POST /a HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n${follower}`,
    [
      ['POST /a HTTP/1.1', 'abc'],
      ['GET /follower HTTP/1.1', ''],
    ],
  ],
];

/** Whether `req` is framed by exactly one Content-Length equal to its body's length (or none for an empty body), with no Transfer-Encoding. */
function framedByLength(req: SeenRequest): boolean {
  const lengths = req.fields.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v);
  const codings = req.fields.filter(([n]) => n.toLowerCase() === 'transfer-encoding');
  if (codings.length > 0) return false;
  return req.body === ''
    ? lengths.length <= 1 && (lengths[0] ?? '0') === '0'
    : lengths.length === 1 && Number(lengths[0]) === req.body.length;
}

/** What the endpoint was sent while every row of a batch ran at once (none: both empty). */
interface Leaked {
  reached: SeenRequest[];
  malformed: string[];
}

/**
 * Sends every row at once, each on its own connection: a row's window (from its send to 100 ms after
 * its answer) overlaps the others', so "nothing reached the endpoint in its window" still covers all
 * that row sent. When anything did reach it, the rows are sent again one by one so that the failing
 * assertion names the row that sent it; `leaked` keeps what the first pass saw, and must be empty.
 */
async function allAtOnce<R, O extends { reached: SeenRequest[]; malformed?: string[] }>(
  rows: readonly R[],
  send: (row: R) => Promise<O>,
): Promise<{ outs: O[]; leaked: Leaked }> {
  const together = await Promise.all(rows.map(send));
  const leaked = {
    reached: [...new Set(together.flatMap((o) => o.reached))],
    malformed: [...new Set(together.flatMap((o) => o.malformed ?? []))],
  };
  if (leaked.reached.length === 0 && leaked.malformed.length === 0) return { outs: together, leaked };
  const outs: O[] = [];
  for (const row of rows) outs.push(await send(row));
  return { outs, leaked };
}

describe('HTTP/1.1 framing on every listener', () => {
  const mesh = smugglingMesh();
  for (const listener of listeners(mesh)) {
    it(`${listener.name}: each refused row gets 400 and the endpoint is sent nothing`, async () => {
      const { outs, leaked } = await allAtOnce(refusedH1, ([, request]) =>
        exchange(mesh, listener, (request + follower).replaceAll('HOST', listener.host)),
      );
      for (const [i, [name]] of refusedH1.entries()) {
        const out = outs[i]!;
        expect({ name, status: out.statuses[0], reached: out.reached, malformed: out.malformed }).toEqual({
          name,
          status: 400,
          reached: [],
          malformed: [],
        });
      }
      expect({ whileAllRowsRan: leaked }).toEqual({ whileAllRowsRan: { reached: [], malformed: [] } });
    }, 60_000);

    it(`${listener.name}: each normalised row reaches the endpoint as exactly the requests meant, framed by Content-Length`, async () => {
      for (const [name, request, expected] of normalisedH1) {
        const text = request.replaceAll('HOST', listener.host);
        const out = await exchange(mesh, listener, text, expected.length);
        const want = expected.map(([line, body]) => [line, body.replaceAll('HOST', listener.host)]);
        expect({ name, statuses: out.statuses, seen: out.reached.map((r) => [r.line, r.body]) }).toEqual({
          name,
          statuses: expected.map(() => 200),
          seen: want,
        });
        expect({ name, framed: out.reached.map(framedByLength), malformed: out.malformed }).toEqual({
          name,
          framed: expected.map(() => true),
          malformed: [],
        });
      }
    }, 60_000);
  }
});

/** An HTTP/2 row: header fields (`AUTH` for the listener's authority), an optional DATA payload, and what must happen. */
interface H2Row {
  name: string;
  fields: [string, string][];
  body?: string;
  /** `refused`: a stream reset, session error or 400, and the endpoint is sent nothing. `one`: 200 and one request, without `absent` fields. */
  expect: 'refused' | 'one';
  /** Lowercased names the forwarded request must not carry (`one` rows). */
  absent?: string[];
}

const get = (extra: [string, string][] = [], method = 'GET', path = '/h2'): [string, string][] => [
  [':method', method],
  [':scheme', 'http'],
  [':path', path],
  [':authority', 'AUTH'],
  ...extra,
];
const smuggled = 'GET /inner HTTP/1.1\r\nHost: AUTH\r\n\r\n';

const rowsH2: H2Row[] = [
  {
    name: 'content-length larger than the DATA',
    fields: get([['content-length', '10']], 'POST'),
    body: 'abc',
    expect: 'refused',
  },
  {
    name: 'content-length smaller than the DATA',
    fields: get([['content-length', '1']], 'POST'),
    body: 'abc',
    expect: 'refused',
  },
  {
    name: 'content-length 0 with a request in the DATA',
    fields: get([['content-length', '0']], 'POST'),
    body: smuggled,
    expect: 'refused',
  },
  {
    name: 'two content-length',
    fields: get(
      [
        ['content-length', '3'],
        ['content-length', '5'],
      ],
      'POST',
    ),
    body: 'abc',
    expect: 'refused',
  },
  {
    name: 'content-length 3, 3',
    fields: get([['content-length', '3, 3']], 'POST'),
    body: 'abc',
    expect: 'refused',
  },
  {
    name: 'content-length +3',
    fields: get([['content-length', '+3']], 'POST'),
    body: 'abc',
    expect: 'refused',
  },
  {
    name: 'transfer-encoding: chunked',
    fields: get([['transfer-encoding', 'chunked']], 'POST'),
    body: '3\r\nabc\r\n0\r\n\r\n',
    expect: 'refused',
  },
  { name: 'an uppercase name', fields: get([['X-A', 'b']]), expect: 'refused' },
  {
    name: ':method holding a request line',
    fields: get([], 'GET /inner HTTP/1.1\r\nHost: AUTH\r\n\r\nGET'),
    expect: 'refused',
  },
  { name: ':method with a space', fields: get([], 'G T'), expect: 'refused' },
  {
    name: ':authority with CRLF',
    fields: [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/h2'],
      [':authority', 'AUTH\r\nx-b: b'],
    ],
    expect: 'refused',
  },
  {
    name: ':authority with a space',
    fields: [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/h2'],
      [':authority', 'AUTH x'],
    ],
    expect: 'refused',
  },
  { name: ':path with CRLF', fields: get([], 'GET', '/a HTTP/1.1\r\nx: y'), expect: 'refused' },
  { name: 'an empty :path', fields: get([], 'GET', ''), expect: 'refused' },
  {
    name: ':scheme with CRLF',
    fields: [
      [':method', 'GET'],
      [':scheme', 'http\r\nx'],
      [':path', '/h2'],
      [':authority', 'AUTH'],
    ],
    expect: 'refused',
  },
  { name: ':path twice', fields: get([[':path', '/other']]), expect: 'refused' },
  { name: ':method twice', fields: get([[':method', 'POST']]), expect: 'refused' },
  {
    name: 'a pseudo-header after a regular one',
    fields: [
      [':method', 'GET'],
      [':scheme', 'http'],
      ['x-a', 'b'],
      [':path', '/h2'],
      [':authority', 'AUTH'],
    ],
    expect: 'refused',
  },
  { name: 'te: gzip', fields: get([['te', 'gzip']]), expect: 'refused' },
  { name: 'connection', fields: get([['connection', 'close']]), expect: 'refused' },
  { name: 'keep-alive', fields: get([['keep-alive', 'timeout=5']]), expect: 'refused' },
  { name: 'upgrade', fields: get([['upgrade', 'websocket']]), expect: 'refused' },
  { name: 'proxy-connection', fields: get([['proxy-connection', 'close']]), expect: 'refused' },
  { name: 'host other than :authority', fields: get([['host', 'evil']]), expect: 'refused' },
  // nghttp2 drops a field it finds invalid and passes the rest of the request on: the field never reaches the endpoint.
  {
    name: 'a value with CRLF and a field after it',
    fields: get([['x-a', 'a\r\nx-b: b']]),
    expect: 'one',
    absent: ['x-a', 'x-b'],
  },
  { name: 'a value with a bare LF', fields: get([['x-a', 'a\nb']]), expect: 'one', absent: ['x-a'] },
  { name: 'a value with NUL', fields: get([['x-a', 'a\x00b']]), expect: 'one', absent: ['x-a'] },
  { name: 'a value with a leading space', fields: get([['x-a', ' a']]), expect: 'one', absent: ['x-a'] },
  { name: 'a name with a space', fields: get([['x a', 'b']]), expect: 'one', absent: ['x a', 'x'] },
  { name: 'a name with a colon', fields: get([['x:a', 'b']]), expect: 'one', absent: ['x:a', 'x'] },
  { name: 'host with CRLF', fields: get([['host', 'AUTH\r\nx-b: b']]), expect: 'one', absent: ['x-b'] },
];

/** The `:status` of a response HEADERS block as node:http2 encodes it (indexed 200/400, else a literal). */
function statusOf(block: Buffer): number {
  const first = block[0]!;
  if ((first & 0x80) !== 0)
    return ({ 8: 200, 9: 204, 12: 400, 13: 404, 14: 500 } as Record<number, number>)[first & 0x7f] ?? 0;
  return Number(block.subarray(2, 2 + (block[1]! & 0x7f)).toString('latin1'));
}

/** Sends one row on a fresh session; resolves with the status answered (0: none), whether stream 1 was reset or the session failed, and what reached the endpoint. */
async function sendH2(mesh: SmugglingMesh, port: number, row: H2Row, auth: string, tls: boolean) {
  const before = mesh.rec.requests().length;
  const raw = await RawH2.open(port, tls ? { tls: mesh.tls } : {});
  let status = 0;
  let pending = Buffer.alloc(0);
  raw.socket.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      const padded = (pending[4]! & 0x20) !== 0 ? 5 : 0;
      if (pending[3] === 1 && status === 0) status = statusOf(pending.subarray(9 + padded, 9 + length));
      pending = pending.subarray(9 + length);
    }
  });
  const block = Buffer.concat(row.fields.map(([n, v]) => literal(n, v.replaceAll('AUTH', auth))));
  raw.write(headers(1, block, row.body !== undefined));
  if (row.body !== undefined)
    raw.write(data(1, Buffer.from(row.body.replaceAll('AUTH', auth), 'latin1'), true));
  await raw.until(
    () => status !== 0 || raw.resets.has(1) || raw.goaway !== null || raw.socket.destroyed,
    1500,
  );
  await new Promise((r) => setTimeout(r, 100));
  const failed = raw.resets.has(1) || raw.goaway !== null || raw.socket.destroyed;
  raw.destroy();
  return { status, failed, reached: mesh.rec.requests().slice(before) };
}

describe('HTTP/2 requests forwarded to an HTTP/1.1 endpoint', () => {
  const mesh = smugglingMesh();
  const targets: { name: string; port: () => number; auth: string; tls: boolean }[] = [
    { name: 'outbound h2c', port: () => mesh.outboundPort, auth: 'users', tls: false },
    { name: 'gateway h2c', port: () => mesh.gatewayPort, auth: 'users', tls: false },
    { name: 'inbound h2 over mTLS', port: () => mesh.inboundPort, auth: 'orders', tls: true },
  ];
  for (const target of targets)
    it(`${target.name}: each refused row is never forwarded; each other row reaches the endpoint as one request without the bad field`, async () => {
      // Refused rows all at once, each on its own session (see allAtOnce); then the forwarded rows
      // one by one, since each must account for exactly one request at the endpoint.
      const refused = rowsH2.filter((row) => row.expect === 'refused');
      const { outs: refusedOuts, leaked } = await allAtOnce(refused, (row) =>
        sendH2(mesh, target.port(), row, target.auth, target.tls),
      );
      for (const row of [...refused, ...rowsH2.filter((r) => r.expect !== 'refused')]) {
        const i = refused.indexOf(row);
        const out =
          i >= 0 ? refusedOuts[i]! : await sendH2(mesh, target.port(), row, target.auth, target.tls);
        if (row.expect === 'refused') {
          // A reset, a session error, a silent session (the inbound's TLS session on a length
          // mismatch) or meshlet's 400 — never a 200, never a request at the endpoint.
          expect({
            name: row.name,
            status: out.status === 200 ? 200 : 'not 200',
            reached: out.reached,
          }).toEqual({
            name: row.name,
            status: 'not 200',
            reached: [],
          });
          if (out.status !== 0)
            expect({ name: row.name, status: out.status }).toEqual({ name: row.name, status: 400 });
        } else {
          expect({ name: row.name, status: out.status, count: out.reached.length }).toEqual({
            name: row.name,
            status: 200,
            count: 1,
          });
          const [seen] = out.reached;
          const names = seen!.fields.map(([n]) => n.toLowerCase());
          for (const absent of row.absent ?? [])
            expect({ name: row.name, has: names.includes(absent) }).toEqual({ name: row.name, has: false });
          expect(seen!.fields.filter(([n]) => n.toLowerCase() === 'host').map(([, v]) => v)).toEqual([
            target.auth,
          ]);
          expect(out.failed).toBe(false);
        }
      }
      expect({ whileAllRowsRan: leaked.reached }).toEqual({ whileAllRowsRan: [] });
    }, 90_000);
});
