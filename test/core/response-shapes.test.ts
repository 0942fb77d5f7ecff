// Endpoint answers meshlet must reshape or refuse: hop-by-hop trailers (which node:http2 throws on) and transfer codings other than chunked.
import { connect, type SecureClientSessionOptions } from 'node:http2';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import {
  parseReply,
  type RawEndpoint,
  rawRequest,
  startRawEndpoint as rawEndpoint,
} from '../helpers/raw-http.ts';
import { makePki, startInbound, type TestInbound, tlsRequest } from '../tls/tls-helpers.ts';

/** A GET over HTTP/2 (h2c prior knowledge, or TLS with `tls`): the response head, trailers and body. */
function h2Get(
  url: string,
  authority: string,
  tls?: SecureClientSessionOptions,
): Promise<{ headers: Record<string, unknown>; trailers?: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const session = connect(url, tls);
    session.on('error', reject);
    const stream = session.request({ ':path': '/', ':authority': authority, te: 'trailers' });
    let headers: Record<string, unknown> = {};
    let trailers: Record<string, unknown> | undefined;
    let body = '';
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (d: Buffer) => (body += d.toString()));
    stream.on('error', reject);
    stream.on('end', () => {
      session.close();
      resolve({ headers, trailers, body });
    });
  });
}

const TRAILERS_ANSWER =
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\n' +
  'x-checksum: abc\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\nupgrade: h2c\r\n' +
  'host: elsewhere\r\ncontent-type: text/html\r\n\r\n';
const GZIP_ANSWER = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00raw-coded-bytes';

describe('trailers and transfer codings from an endpoint', () => {
  const servers: RawEndpoint[] = [];
  let mesh: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    const trailers = await rawEndpoint(TRAILERS_ANSWER);
    const gzip = await rawEndpoint(GZIP_ANSWER, true);
    const gzipChunked = await rawEndpoint(
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n',
    );
    const h2c = await rawEndpoint(
      'HTTP/1.1 200 OK\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 2\r\n\r\nok',
    );
    const twoTypes = await rawEndpoint(
      'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nok',
    );
    servers.push(trailers, gzip, gzipChunked, h2c, twoTypes);
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          trailers: [`127.0.0.1:${trailers.port}`],
          gzip: [`127.0.0.1:${gzip.port}`],
          gzipchunked: [`127.0.0.1:${gzipChunked.port}`],
          h2c: [`127.0.0.1:${h2c.port}`],
          twotypes: [`127.0.0.1:${twoTypes.port}`],
        },
      },
      accessLog: { enabled: false },
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh.close();
    for (const s of servers) await s.close();
  });

  it('an HTTP/1.1 client gets the trailers without the hop-by-hop, framing and routing ones', async () => {
    const raw = await rawRequest(
      port,
      'GET / HTTP/1.1\r\nHost: trailers\r\nTE: trailers\r\nConnection: close\r\n\r\n',
    );
    expect(parseReply(raw).status).toBe(200);
    const tail = raw.slice(raw.indexOf('\r\n0\r\n') + 5).toLowerCase();
    expect(tail).toBe('x-checksum: abc\r\n\r\n');
  });

  it('an HTTP/2 client gets them too, and meshlet stays up (node:http2 throws on a connection header)', async () => {
    for (let i = 0; i < 3; i++) {
      const reply = await h2Get(mesh.outbound, 'trailers');
      expect(reply.headers[':status']).toBe(200);
      expect(reply.body).toBe('hello');
      expect(Object.fromEntries(Object.entries(reply.trailers ?? {}))).toEqual({ 'x-checksum': 'abc' });
    }
    expect((await request(`${mesh.admin}/live`)).statusCode).toBe(200);
  });

  it('Transfer-Encoding: gzip is refused with 502, counted against the endpoint, not relayed as raw bytes', async () => {
    for (const host of ['gzip', 'gzipchunked']) {
      const reply = parseReply(
        await rawRequest(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
      );
      expect(reply.status).toBe(502);
      expect(reply.headers['x-meshlet-error']).toBe('upstream_unreachable');
      expect(JSON.parse(reply.body).message).toContain('unsupported transfer-encoding');
    }
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_upstream_attempts_total\{upstream="gzip",result="reset"\} [1-9]/m);
    expect(metrics).not.toMatch(/^meshlet_upstream_attempts_total\{upstream="gzip",result="response"\}/m);
  });

  it('HTTP2-Settings, hop-by-hop like Connection, is dropped (node:http2 refuses to send it)', async () => {
    const reply = await h2Get(mesh.outbound, 'h2c');
    expect(reply.headers[':status']).toBe(200);
    expect(reply.body).toBe('ok');
    expect(reply.headers['http2-settings']).toBeUndefined();
  });

  it('a head node:http2 will not write (two Content-Types) gets an HTTP/2 client 502, not a hang', async () => {
    const reply = await h2Get(mesh.outbound, 'twotypes');
    expect(reply.headers[':status']).toBe(502);
    expect(reply.headers['x-meshlet-error']).toBe('upstream_unreachable');
    expect(JSON.parse(reply.body).message).toContain('response head meshlet cannot pass on');
    // An HTTP/1.1 client takes both.
    const h1 = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: twotypes\r\nConnection: close\r\n\r\n');
    expect(parseReply(h1).status).toBe(200);
    expect((await request(`${mesh.admin}/live`)).statusCode).toBe(200);
  });
});

describe('the inbound listener and its local app', () => {
  let app: RawEndpoint;
  let trailerApp: RawEndpoint;
  let inbound: TestInbound;
  let trailerInbound: TestInbound;
  let web: { certPem: string; keyPem: string };
  let ca: string;

  beforeAll(async () => {
    const pki = await makePki();
    app = await rawEndpoint(GZIP_ANSWER, true);
    trailerApp = await rawEndpoint(TRAILERS_ANSWER);
    inbound = await startInbound(pki, { service: 'orders', appPort: app.port });
    trailerInbound = await startInbound(pki, { service: 'orders', appPort: trailerApp.port });
    web = await pki.issue('web');
    ca = pki.ca.certPem;
  });
  afterAll(async () => {
    await inbound?.close();
    await trailerInbound?.close();
    for (const s of [app, trailerApp]) await s?.close();
  });

  it("refuses the app's gzip transfer coding with 502 rather than passing raw coded bytes", async () => {
    const reply = await tlsRequest(inbound.port, { ca, cert: web.certPem, key: web.keyPem, path: '/' });
    expect(reply.status).toBe(502);
    expect(JSON.parse(reply.body!).message).toContain('unsupported transfer-encoding "gzip"');
  });

  it("passes the app's trailers to an HTTP/2 peer without the hop-by-hop ones, and stays up", async () => {
    const tls = { ca, cert: web.certPem, key: web.keyPem, checkServerIdentity: () => undefined };
    for (let i = 0; i < 2; i++) {
      const reply = await h2Get(`https://127.0.0.1:${trailerInbound.port}`, 'orders', tls);
      expect(reply.headers[':status']).toBe(200);
      expect(reply.body).toBe('hello');
      expect(Object.fromEntries(Object.entries(reply.trailers ?? {}))).toEqual({ 'x-checksum': 'abc' });
    }
  });
});
