// Endpoint response heads at the edges of what HTTP allows: Content-Length on 204/304, many header fields, oversized heads.
import { connect, type SecureClientSessionOptions } from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, type RawEndpoint, rawRequest, startRawEndpoint } from '../helpers/raw-http.ts';
import { makePki, startInbound, type TestInbound } from '../tls/tls-helpers.ts';

/** How an HTTP/2 GET ended: the response head and body, or the stream's error. */
interface H2Reply {
  headers: Record<string, unknown>;
  body: string;
  error?: string;
}

/**
 * A GET over HTTP/2 (h2c prior knowledge, or TLS with `tls`) from a client that takes up to 5,000
 * header fields (node:http2's own default, 128, would refuse a long head itself); bounded by 5 s.
 */
function h2Get(url: string, authority: string, tls?: SecureClientSessionOptions): Promise<H2Reply> {
  return new Promise((resolve) => {
    const session = connect(url, { ...tls, maxHeaderListPairs: 5000 });
    let headers: Record<string, unknown> = {};
    let body = '';
    const finish = (error?: string): void => {
      clearTimeout(timer);
      session.destroy();
      resolve(error === undefined ? { headers, body } : { headers, body, error });
    };
    const timer = setTimeout(() => finish('timed out'), 5000);
    session.on('error', (err) => finish(String(err)));
    const stream = session.request({ ':path': '/', ':authority': authority });
    stream.on('response', (h) => (headers = h));
    stream.on('data', (d: Buffer) => (body += d.toString()));
    stream.on('error', (err) => finish(String(err)));
    stream.on('end', () => finish());
  });
}

/** A GET over HTTP/1.1 with `Connection: close`, parsed. */
async function h1Get(port: number, host: string): Promise<ReturnType<typeof parseReply> & { raw: string }> {
  const raw = await rawRequest(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  return { ...parseReply(raw), raw };
}

/** An HTTP/1.1 answer with `n` small header fields `x-f-N: v`. */
function manyFields(n: number): string {
  let head = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n';
  for (let i = 0; i < n; i++) head += `x-f-${i}: v\r\n`;
  return `${head}\r\nok`;
}

/**
 * An endpoint whose first answer is a 204 followed by 5 stray body bytes, and whose later answers
 * are `200 second`; it records which connection (in order of arrival) carried each request.
 */
async function strayBytesEndpoint(): Promise<{ server: Server; port: number; seen: number[] }> {
  const seen: number[] = [];
  let connections = 0;
  const server = createServer((socket: Socket) => {
    const id = ++connections;
    let buffered = '';
    socket.on('error', () => {});
    socket.on('data', (d) => {
      buffered += d.toString('latin1');
      while (buffered.includes('\r\n\r\n')) {
        buffered = buffered.slice(buffered.indexOf('\r\n\r\n') + 4);
        seen.push(id);
        socket.write(
          seen.length === 1
            ? 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello'
            : 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond',
        );
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port, seen };
}

describe('response heads from an endpoint at the edges of HTTP', () => {
  const raws: RawEndpoint[] = [];
  let stray: Awaited<ReturnType<typeof strayBytesEndpoint>>;
  let mesh: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    const answers = {
      nolength0: 'HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n',
      nolength5: 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n',
      nochunked: 'HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n',
      notmodified: 'HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: "v1"\r\n\r\n',
      many: manyFields(200),
      // 100 KiB of response headers: over undici's 16 KiB limit on what it reads.
      huge: `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${`x-big: ${'a'.repeat(1017)}\r\n`.repeat(100)}\r\nok`,
    };
    const endpoints: Record<string, string[]> = {};
    for (const [name, answer] of Object.entries(answers)) {
      const raw = await startRawEndpoint(answer);
      raws.push(raw);
      endpoints[name] = [raw.endpoint];
    }
    stray = await strayBytesEndpoint();
    endpoints.stray = [`127.0.0.1:${stray.port}`];
    mesh = await startMeshlet({ registry: { type: 'static', endpoints }, accessLog: { enabled: false } });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh?.close();
    for (const raw of raws) await raw.close();
    await new Promise<void>((r) => (stray ? stray.server.close(() => r()) : r()));
  });

  it('a 204 reaches an HTTP/1.1 client without the Content-Length or Transfer-Encoding the endpoint sent', async () => {
    for (const host of ['nolength0', 'nolength5', 'nochunked']) {
      const reply = await h1Get(port, host);
      expect(reply.status, host).toBe(204);
      expect(reply.headers['content-length'], host).toBeUndefined();
      expect(reply.headers['transfer-encoding'], host).toBeUndefined();
      expect(reply.body, host).toBe('');
    }
  });

  it('a 204 with Content-Length: 5 reaches an HTTP/2 client as a 204, not a PROTOCOL_ERROR reset', async () => {
    for (const host of ['nolength0', 'nolength5', 'nochunked']) {
      const reply = await h2Get(mesh.outbound, host);
      expect(reply.error, host).toBeUndefined();
      expect(reply.headers[':status'], host).toBe(204);
      expect(reply.headers['content-length'], host).toBeUndefined();
    }
  });

  it('a 304 keeps its Content-Length (the length of the selected representation), over both protocols', async () => {
    const h1 = await h1Get(port, 'notmodified');
    expect(h1.status).toBe(304);
    expect(h1.headers['content-length']).toBe('5');
    expect(h1.headers.etag).toBe('"v1"');
    expect(h1.body).toBe('');
    const h2 = await h2Get(mesh.outbound, 'notmodified');
    expect(h2.error).toBeUndefined();
    expect(h2.headers[':status']).toBe(304);
    expect(h2.headers['content-length']).toBe('5');
  });

  it("a 204's stray body bytes are not forwarded, and the next request gets its own answer on a new connection", async () => {
    const first = await h1Get(port, 'stray');
    expect(first.status).toBe(204);
    // Nothing after the head: the 5 bytes the endpoint wrote after its 204 stayed behind.
    expect(first.raw.endsWith('\r\n\r\n')).toBe(true);
    const second = await h1Get(port, 'stray');
    expect(second.status).toBe(200);
    expect(second.body).toBe('second');
    // undici dropped the connection that held the stray bytes instead of reading them as an answer.
    expect(stray.seen).toEqual([1, 2]);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_upstream_attempts_total\{upstream="stray",result="response"\} 2$/m);
    expect(metrics).not.toMatch(/^meshlet_upstream_attempts_total\{upstream="stray",result="reset"\}/m);
  });

  it('200 header fields from an HTTP/1.1 endpoint all reach an HTTP/2 client (over node:http2 default of 128)', async () => {
    const reply = await h2Get(mesh.outbound, 'many');
    expect(reply.error).toBeUndefined();
    expect(reply.headers[':status']).toBe(200);
    expect(reply.body).toBe('ok');
    const fields = Object.keys(reply.headers).filter((name) => name.startsWith('x-f-'));
    expect(fields).toHaveLength(200);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_upstream_attempts_total\{upstream="many",result="response"\} 1$/m);
  });

  it("100 KiB of response headers get 502 upstream_unreachable with meshlet's error body, counted as a reset (as Envoy counts it)", async () => {
    const h1 = await h1Get(port, 'huge');
    expect(h1.status).toBe(502);
    expect(h1.headers['x-meshlet-error']).toBe('upstream_unreachable');
    const body = JSON.parse(h1.body) as { error: string; message: string; upstream: string };
    expect(body.error).toBe('upstream_unreachable');
    expect(body.upstream).toBe('huge');
    expect(body.message).toContain('response headers too large (UND_ERR_HEADERS_OVERFLOW)');
    const h2 = await h2Get(mesh.outbound, 'huge');
    expect(h2.error).toBeUndefined();
    expect(h2.headers[':status']).toBe(502);
    expect(h2.headers['x-meshlet-error']).toBe('upstream_unreachable');
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_upstream_attempts_total\{upstream="huge",result="reset"\} [1-9]/m);
    expect(metrics).not.toMatch(/^meshlet_upstream_attempts_total\{upstream="huge",result="response"\}/m);
    expect((await request(`${mesh.admin}/live`)).statusCode).toBe(200);
  });
});

describe('the inbound listener and a local app that answers 204 with Content-Length', () => {
  let app: RawEndpoint;
  let inbound: TestInbound;
  let tls: SecureClientSessionOptions;

  beforeAll(async () => {
    const pki = await makePki();
    app = await startRawEndpoint('HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n');
    inbound = await startInbound(pki, { service: 'orders', appPort: app.port });
    const web = await pki.issue('web');
    tls = { ca: pki.ca.certPem, cert: web.certPem, key: web.keyPem, checkServerIdentity: () => undefined };
  });
  afterAll(async () => {
    await inbound?.close();
    await app?.close();
  });

  it('answers an HTTP/2 peer 204 without the Content-Length, not a stream reset', async () => {
    const reply = await h2Get(`https://127.0.0.1:${inbound.port}`, 'orders', tls);
    expect(reply.error).toBeUndefined();
    expect(reply.headers[':status']).toBe(204);
    expect(reply.headers['content-length']).toBeUndefined();
  });
});
