// What a caller can put into the access lines of both hops (A: outbound or gateway, B: inbound mTLS): bounded size, one JSON object per line.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { MAX_PATH_BYTES, MAX_VALUE_BYTES } from '../../src/telemetry/access-log-fields.ts';
import { mint } from '../gateway/fixtures.ts';
import { tlsRequest } from '../tls/tls-helpers.ts';
import { h2Request } from '../helpers/h2-request.ts';
import { rawExchange } from '../helpers/raw-http.ts';
import { accessLines, JWT_SECRET, meshForSuite } from './two-meshlets.ts';

/** Longest access line a request may make: the path's bound, four caller values' bounds, and the fixed fields. */
const LINE_BOUND = MAX_PATH_BYTES + 4 * MAX_VALUE_BYTES + 1024;

/** Characters JSON.stringify leaves raw that a line reader may split on or a terminal obey: C1 controls (NEL), U+2028, U+2029. */
const LINE_BREAKERS = /[\u0080-\u009f\u2028\u2029]/;

/** Parses one raw access line, checking it is a single JSON object within {@link LINE_BOUND} bytes. */
function parseLine(line: string): Record<string, unknown> {
  expect(Buffer.byteLength(line), line.slice(0, 200)).toBeLessThanOrEqual(LINE_BOUND);
  const entry = JSON.parse(line) as Record<string, unknown>;
  expect(entry.msg).toBe('access');
  return entry;
}

/** What a value cut on an access line looks like: its start, then the marker with the length as received. */
function expectCut(logged: unknown, sent: string): void {
  expect(typeof logged).toBe('string');
  const s = logged as string;
  expect(s.endsWith(`...[truncated, ${sent.length} chars]`), s.slice(-60)).toBe(true);
  expect(sent.startsWith(s.slice(0, s.lastIndexOf('...[truncated')))).toBe(true);
  expect(s.length).toBeGreaterThan(MAX_VALUE_BYTES / 2);
}

const mesh = meshForSuite();

describe('one request cannot write an unbounded access line (log amplification)', () => {
  it('HTTP/1.1 on the outbound listener: a 13 KiB query and a 2 KiB x-request-id; both hops cut them, the request goes on whole', async () => {
    const path = `/big1?q=${'a'.repeat(13_000)}`;
    const id = `r1-${'r'.repeat(2000)}`;
    const reply = await rawExchange(
      mesh.outboundPort,
      `GET ${path} HTTP/1.1\r\nHost: orders\r\nx-request-id: ${id}\r\nConnection: close\r\n\r\n`,
    );
    expect(reply.startsWith('HTTP/1.1 200')).toBe(true);
    const seen = mesh.app.requests.find((r) => r.url!.startsWith('/big1'))!;
    expect(seen.url).toBe(path);
    expect(seen.headers['x-request-id']).toBe(id);
    for (const m of [mesh.a, mesh.b]) {
      const [line] = await accessLines(m, '"path":"/big1');
      const entry = parseLine(line!);
      expectCut(entry.path, path);
      expectCut(entry.requestId, id);
    }
  });

  it('gateway, HTTP/1.1: a 60 KiB path (the listener takes 64 KiB heads)', async () => {
    const path = `/pub/big2/${'b'.repeat(60 * 1024)}`;
    const reply = await rawExchange(
      mesh.gatewayPort,
      `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    expect(reply.startsWith('HTTP/1.1 200')).toBe(true);
    for (const m of [mesh.a, mesh.b])
      expectCut(parseLine((await accessLines(m, '/pub/big2/'))[0]!).path, path);
  });

  it('HTTP/2 (h2c) on the outbound listener: a gRPC call with a 12 KiB method name and a 3 KiB x-request-id', async () => {
    const path = `/big3.Svc/${'M'.repeat(12_000)}`;
    const id = `r3-${'z'.repeat(3000)}`;
    const h = await h2Request(`http://127.0.0.1:${mesh.outboundPort}`, {
      ':method': 'POST',
      ':path': path,
      ':authority': 'orders',
      'content-type': 'application/grpc',
      te: 'trailers',
      'x-request-id': id,
    });
    expect(h[':status']).toBe(200);
    for (const m of [mesh.a, mesh.b]) {
      const entry = parseLine((await accessLines(m, '"path":"/big3.Svc/'))[0]!);
      expectCut(entry.path, path);
      expectCut(entry.requestId, id);
    }
  });

  it('HTTP/2 (h2c): an 8 KiB method token is cut too', async () => {
    const method = 'X'.repeat(8000);
    const h = await h2Request(`http://127.0.0.1:${mesh.outboundPort}`, {
      ':method': method,
      ':path': '/big4',
      ':authority': 'orders',
    });
    // Not a method node:http's HTTP/1.1 parser knows: refused at the first hop (its line has no path).
    expect(h[':status']).toBe(400);
    expectCut(parseLine((await accessLines(mesh.a, '"method":"XXXXXXXX'))[0]!).method, method);
  });

  it('inbound mTLS listener, called directly over HTTP/1.1 and HTTP/2 (ALPN h2): a 60 KiB path', async () => {
    const ca = readFileSync(mesh.client.ca);
    const cert = readFileSync(mesh.client.cert);
    const key = readFileSync(mesh.client.key);
    const h1Path = `/big5/${'c'.repeat(60 * 1024)}`;
    const r = await tlsRequest(mesh.inboundPort, {
      ca: ca.toString(),
      cert: cert.toString(),
      key: key.toString(),
      path: h1Path,
    });
    expect(r.status).toBe(200);
    expectCut(parseLine((await accessLines(mesh.b, '/big5/'))[0]!).path, h1Path);
    const h2Path = `/big6/${'d'.repeat(60 * 1024)}`;
    const h = await h2Request(
      `https://127.0.0.1:${mesh.inboundPort}`,
      { ':path': h2Path },
      { ca, cert, key },
    );
    expect(h[':status']).toBe(200);
    expectCut(parseLine((await accessLines(mesh.b, '/big6/'))[0]!).path, h2Path);
  });

  it("gateway: a token's 2 KiB subject and tenant (claims an identity provider may fill from user input) are cut", async () => {
    const subject = `s-${'s'.repeat(2000)}`;
    const tenant = `t-${'t'.repeat(2000)}`;
    const token = await mint(JWT_SECRET, { sub: subject, tenant });
    const res = await request(`http://127.0.0.1:${mesh.gatewayPort}/me/big7`, {
      headers: { authorization: `Bearer ${token}` },
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    const entry = parseLine((await accessLines(mesh.a, '"path":"/me/big7"'))[0]!);
    expectCut(entry.subject, subject);
    expectCut(entry.tenant, tenant);
  });
});

describe('every access line stays one JSON object per line and carries the value', () => {
  it('HTTP/1.1: raw 0x80-0xFF bytes, quotes, backslashes and a tab in x-request-id (node:http reads them as latin1)', async () => {
    const id = 'id5-\xff\x80\x85\xe9"\\\tend';
    const reply = await rawExchange(
      mesh.outboundPort,
      `GET /odd5?q="x" HTTP/1.1\r\nHost: orders\r\nx-request-id: ${id}\r\nConnection: close\r\n\r\n`,
    );
    expect(reply.startsWith('HTTP/1.1 200')).toBe(true);
    for (const m of [mesh.a, mesh.b]) {
      const [line] = await accessLines(m, '"path":"/odd5');
      // No raw NEL (U+0085) for a line reader to split on: it is written escaped.
      expect(line).not.toMatch(LINE_BREAKERS);
      const entry = parseLine(line!);
      expect(entry.requestId).toBe(id);
      expect(entry.path).toBe('/odd5?q="x"');
    }
    // The endpoint got the same bytes.
    expect(mesh.app.requests.find((r) => r.url!.startsWith('/odd5'))!.headers['x-request-id']).toBe(id);
  });

  it('HTTP/2: the UTF-8 bytes of U+2028 and a 0xFF byte in x-request-id; a malformed traceparent passes untouched', async () => {
    const id = `id6-${Buffer.from('\u2028\u00e9', 'utf8').toString('latin1')}\xff`;
    const traceparent = 'zz-not-a-trace-\xff';
    const h = await h2Request(`http://127.0.0.1:${mesh.outboundPort}`, {
      ':path': '/odd6',
      ':authority': 'orders',
      'x-request-id': id,
      traceparent,
    });
    expect(h[':status']).toBe(200);
    expect(h['x-request-id']).toBe(id);
    for (const m of [mesh.a, mesh.b]) {
      const [line] = await accessLines(m, '"path":"/odd6"');
      expect(line).not.toMatch(LINE_BREAKERS);
      expect(parseLine(line!).requestId).toBe(id);
    }
    const seen = mesh.app.requests.find((r) => r.url === '/odd6')!;
    expect(seen.headers.traceparent).toBe(traceparent);
    expect(seen.headers['x-request-id']).toBe(id);
  });

  it("gateway: a token's subject and tenant holding U+2028, U+2029 and NEL are written escaped", async () => {
    const subject = 'user\u2028name\u0085x';
    const tenant = 'acme\u2029';
    const token = await mint(JWT_SECRET, { sub: subject, tenant });
    const res = await request(`http://127.0.0.1:${mesh.gatewayPort}/me/odd9`, {
      headers: { authorization: `Bearer ${token}` },
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    const [line] = await accessLines(mesh.a, '"path":"/me/odd9"');
    expect(line).not.toMatch(LINE_BREAKERS);
    const entry = parseLine(line!);
    expect(entry.subject).toBe(subject);
    expect(entry.tenant).toBe(tenant);
  });

  it('many x-request-id fields: the first is kept and passed on alone; none: one is generated', async () => {
    const reply = await rawExchange(
      mesh.outboundPort,
      'GET /odd7 HTTP/1.1\r\nHost: orders\r\nx-request-id: first\r\nx-request-id: second\r\nx-request-id: third\r\nConnection: close\r\n\r\n',
    );
    expect(reply.startsWith('HTTP/1.1 200')).toBe(true);
    const seen = mesh.app.requests.find((r) => r.url === '/odd7')!;
    expect(
      seen.rawHeaders.filter((_, i, all) => i % 2 === 0 && all[i]!.toLowerCase() === 'x-request-id'),
    ).toHaveLength(1);
    expect(seen.headers['x-request-id']).toBe('first');
    expect(parseLine((await accessLines(mesh.b, '"path":"/odd7"'))[0]!).requestId).toBe('first');
    const none = await rawExchange(
      mesh.outboundPort,
      'GET /odd8 HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n',
    );
    expect(none.startsWith('HTTP/1.1 200')).toBe(true);
    const generated = parseLine((await accessLines(mesh.a, '"path":"/odd8"'))[0]!).requestId;
    expect(generated).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseLine((await accessLines(mesh.b, '"path":"/odd8"'))[0]!).requestId).toBe(generated);
  });
});
