// Parity table of hostile request targets over HTTP/1.1 and HTTP/2 on the outbound, gateway and inbound listeners: what the client gets, what reaches the endpoint, and that a refusal counts against no endpoint.
import { describe, expect, it } from 'vitest';
import { h2Exchange } from '../helpers/h2-request.ts';
import { sampleSum, scrapeMetrics } from '../helpers/metrics.ts';
import * as F from '../hostile-h2/h2-frames.ts';
import { exchange, listeners, smugglingMesh, type SmugglingMesh } from './smuggling-mesh.ts';

type ListenerName = 'outbound' | 'gateway' | 'inbound';
type Protocol = 'http1' | 'http2';

/** What one target came to on one listener and protocol: the client's answer and the request lines the endpoint parsed. */
interface Outcome {
  /** `400 bad_request` (status and `x-meshlet-error`), `200`, or `reset PROTOCOL_ERROR` (an HTTP/2 stream reset, code by name). */
  client: string;
  reached: string[];
}

/** meshlet's own refusal: 400 `bad_request`, nothing forwarded. */
const REFUSED: Outcome = { client: '400 bad_request', reached: [] };
/** nghttp2's own refusal of a `:path` holding a space or a control: the stream is reset, nothing forwarded. */
const RESET: Outcome = { client: 'reset PROTOCOL_ERROR', reached: [] };
/** Forwarded, the endpoint reading `target` in its request line. */
const forwarded = (target: string): Outcome => ({ client: '200', reached: [`GET ${target} HTTP/1.1`] });

/**
 * A row: a target (latin1: each char is one byte on the wire, over either protocol) and what every
 * listener must do with it. `refused` rows get 400 on HTTP/1.1 everywhere and, over HTTP/2, the same
 * 400 or, where nghttp2 refuses the `:path` itself, a reset. Other rows are forwarded; `edge` is
 * what the outbound and gateway listeners (which normalise paths for their routes) send on, `inbound`
 * what the inbound listener (no routes: the path goes to the app as it came) sends on, over either protocol.
 */
type Row =
  | { name: string; target: string; refused: 'meshlet' | 'nghttp2' }
  | { name: string; target: string; edge: Outcome; inbound: Outcome };

const rows: Row[] = [
  { name: 'byte 0xE9 (latin1 é)', target: '/caf\xe9', refused: 'meshlet' },
  { name: 'byte 0x80', target: '/\x80', refused: 'meshlet' },
  { name: 'byte 0xFF', target: '/a\xff', refused: 'meshlet' },
  { name: 'byte 0xE9 in the query', target: '/a?q=\xe9', refused: 'meshlet' },
  { name: 'a # fragment', target: '/a#frag', refused: 'meshlet' },
  { name: 'a # fragment after the query', target: '/a?q#f', refused: 'meshlet' },
  { name: 'an empty # fragment', target: '/a#', refused: 'meshlet' },
  { name: 'a space', target: '/a b', refused: 'nghttp2' },
  { name: 'NUL', target: '/a\x00b', refused: 'nghttp2' },
  { name: 'byte 0x01', target: '/a\x01b', refused: 'nghttp2' },
  { name: 'a TAB', target: '/a\tb', refused: 'nghttp2' },
  { name: 'byte 0x1F', target: '/a\x1fb', refused: 'nghttp2' },
  { name: 'DEL', target: '/a\x7fb', refused: 'nghttp2' },
  { name: 'a plain path', target: '/ok', edge: forwarded('/ok'), inbound: forwarded('/ok') },
  { name: 'a .. segment', target: '/a/../b', edge: forwarded('/b'), inbound: forwarded('/a/../b') },
  { name: '.. above the root', target: '/..', edge: forwarded('/'), inbound: forwarded('/..') },
  {
    name: 'an encoded .. segment',
    target: '/%2e%2e/x',
    edge: forwarded('/x'),
    inbound: forwarded('/%2e%2e/x'),
  },
  { name: '%00', target: '/a%00b', edge: forwarded('/a%00b'), inbound: forwarded('/a%00b') },
  // Route path normalisation refuses these (routes may opt out); the inbound listener has no routes.
  { name: 'an encoded slash', target: '/a%2Fb', edge: REFUSED, inbound: forwarded('/a%2Fb') },
  { name: 'a backslash', target: '/a\\b', edge: REFUSED, inbound: forwarded('/a\\b') },
];

/** What `row` must come to on `listener` over `protocol`. */
function expected(row: Row, listener: ListenerName, protocol: Protocol): Outcome {
  if ('refused' in row) return protocol === 'http2' && row.refused === 'nghttp2' ? RESET : REFUSED;
  return listener === 'inbound' ? row.inbound : row.edge;
}

/** The authority each listener routes to the recording endpoint. */
const AUTHORITY: Record<ListenerName, string> = { outbound: 'users', gateway: 'users', inbound: 'orders' };

/** The name of an HTTP/2 error code the tests meet. */
function codeName(code: number | undefined): string {
  const name = Object.entries(F.H2Error).find(([, c]) => c === code)?.[0];
  return name ?? `code ${String(code)}`;
}

/** Request lines the endpoint parsed since `before` requests, after a 100 ms settle. */
async function reachedSince(mesh: SmugglingMesh, before: number): Promise<string[]> {
  await new Promise((r) => setTimeout(r, 100));
  return mesh.rec
    .requests()
    .slice(before)
    .map((r) => r.line);
}

/** The first answer of a raw HTTP/1.1 exchange as an {@link Outcome}: its status and `x-meshlet-error`, and what reached the endpoint. */
function http1Outcome(out: { statuses: number[]; reply: string; reached: { line: string }[] }): Outcome {
  const error = /\r\nx-meshlet-error: *([^\r]*)/i.exec(out.reply)?.[1];
  const client = [String(out.statuses[0] ?? 'no answer'), error].filter((s) => s !== undefined).join(' ');
  return { client, reached: out.reached.map((r) => r.line) };
}

/** Sends `GET target` over HTTP/1.1 (a raw socket) to `listener`. */
async function overHttp1(mesh: SmugglingMesh, listener: ListenerName, target: string): Promise<Outcome> {
  const l = listeners(mesh).find((x) => x.name === listener)!;
  return http1Outcome(await exchange(mesh, l, `GET ${target} HTTP/1.1\r\nHost: ${l.host}\r\n\r\n`));
}

/**
 * Sends `GET target` over HTTP/2 with node:http2's client (it writes the `:path` bytes as they are,
 * latin1); when the stream fails, sends it again as raw frames to read the server's RST_STREAM code.
 */
async function overHttp2(mesh: SmugglingMesh, listener: ListenerName, target: string): Promise<Outcome> {
  const port = { outbound: mesh.outboundPort, gateway: mesh.gatewayPort, inbound: mesh.inboundPort }[
    listener
  ];
  const tls = listener === 'inbound' ? mesh.tls : undefined;
  const origin = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`;
  const before = mesh.rec.requests().length;
  const answered = await h2Exchange(
    origin,
    { ':method': 'GET', ':path': target, ':authority': AUTHORITY[listener] },
    tls,
    3000,
  ).catch(() => null);
  if (answered !== null) {
    const error = answered.head['x-meshlet-error'];
    const client = [String(answered.head[':status']), error].filter((s) => s !== undefined).join(' ');
    return { client, reached: await reachedSince(mesh, before) };
  }
  const raw = await F.RawH2.open(port, tls === undefined ? {} : { tls });
  try {
    raw.write(F.headers(1, F.requestBlock(AUTHORITY[listener], target)));
    await raw.until(() => raw.resets.has(1) || raw.answered.has(1) || raw.goaway !== null, 3000);
    const client = raw.resets.has(1)
      ? `reset ${codeName(raw.resets.get(1))}`
      : raw.answered.has(1)
        ? 'answered on the second try'
        : `no answer (goaway ${JSON.stringify(raw.goaway)})`;
    return { client, reached: await reachedSince(mesh, before) };
  } finally {
    raw.destroy();
  }
}

/** What must not move when meshlet refuses a request: failures and ejections of the `users` endpoint (meshlet A). */
function againstEndpoint(text: string): Record<string, number> {
  return {
    '5xx for users': sampleSum(text, 'meshlet_requests_total', { upstream: 'users', status_class: '5xx' }),
    'connect errors': sampleSum(text, 'meshlet_upstream_connect_errors_total', {}),
    ejections: sampleSum(text, 'meshlet_outlier_ejections_total', {}),
  };
}

describe('request targets: the same decision on every listener and protocol', () => {
  const mesh = smugglingMesh();
  const columns: [ListenerName, Protocol][] = [
    ['outbound', 'http1'],
    ['outbound', 'http2'],
    ['gateway', 'http1'],
    ['gateway', 'http2'],
    ['inbound', 'http1'],
    ['inbound', 'http2'],
  ];

  for (const [listener, protocol] of columns)
    it(`${listener} over ${protocol}: every row as the table says; nothing refused reaches the endpoint or counts against it`, async () => {
      const admin = listener === 'inbound' ? mesh.b.admin : mesh.a.admin;
      const direction = listener === 'inbound' ? 'inbound' : 'outbound';
      const before = await scrapeMetrics(admin);
      const send = protocol === 'http1' ? overHttp1 : overHttp2;
      let refusedByMeshlet = 0;
      for (const row of rows) {
        const want = expected(row, listener, protocol);
        if (want.client === REFUSED.client) refusedByMeshlet++;
        const got = await send(mesh, listener, row.target);
        expect({ row: row.name, ...got }).toEqual({ row: row.name, ...want });
      }
      const after = await scrapeMetrics(admin);
      // Each 400 is meshlet's own answer (a local reply), never the endpoint's.
      const localReplies = (text: string) =>
        sampleSum(text, 'meshlet_local_replies_total', { direction, code: 'bad_request' });
      expect(localReplies(after) - localReplies(before)).toBe(refusedByMeshlet);
      if (listener === 'inbound') {
        const denied = (text: string) =>
          sampleSum(text, 'meshlet_inbound_denied_total', { caller: 'web', reason: 'bad_request' });
        expect(denied(after) - denied(before)).toBe(refusedByMeshlet);
      } else expect(againstEndpoint(after)).toEqual(againstEndpoint(before));
    }, 60_000);
});

describe('request targets of WebSocket upgrade handshakes (HTTP/1.1): the decision a plain request gets', () => {
  const mesh = smugglingMesh();
  const upgrade = (target: string, host: string): string =>
    `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n` +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';
  // The recording endpoint answers an upgrade handshake with a plain 200: it reached the endpoint.
  const upgradeRows: [name: string, target: string, want: Outcome][] = [
    ['a # fragment', '/ws#x', REFUSED],
    ['a # fragment after the query', '/ws?a#x', REFUSED],
    ['byte 0xE9', '/ws\xe9', REFUSED],
    ['a plain path', '/ws', forwarded('/ws')],
  ];
  for (const name of ['outbound', 'gateway', 'inbound'] as const)
    it(`${name}: a refused target gets 400 bad_request and never reaches the endpoint`, async () => {
      const l = listeners(mesh).find((x) => x.name === name)!;
      for (const [row, target, want] of upgradeRows) {
        const got = http1Outcome(await exchange(mesh, l, upgrade(target, l.host)));
        expect({ row, ...got }).toEqual({ row, ...want });
      }
    }, 30_000);
});
