// Response heads and trailers from HTTP/2 endpoints (h2c, and a peer meshlet over mTLS with ALPN h2): many fields pass, and the HTTP/1.1 side's byte limit decides.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { type RawEndpoint, rawRequest, parseReply, startRawEndpoint } from '../helpers/raw-http.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import {
  bigFields,
  DATE,
  grpcCall,
  h2Get,
  LIMIT,
  named,
  padFor,
  startH2Endpoint,
} from './long-heads-endpoint.ts';
import { type RawH2Server, startRawH2Server } from './raw-h2-server.ts';

/** Every `name{labels} value` line of meshlet's metrics for `upstream` whose name starts with `metric`. */
async function metricLines(mesh: InProcessMeshlet, metric: string, upstream: string): Promise<string[]> {
  const text = await (await request(`${mesh.admin}/metrics`)).body.text();
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${metric}{upstream="${upstream}"`))
    .map((line) => line.replace(`upstream="${upstream}"`, 'upstream="U"'));
}

describe('response heads from an h2c endpoint', () => {
  let h2: Awaited<ReturnType<typeof startH2Endpoint>>;
  const raws: RawEndpoint[] = [];
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    h2 = await startH2Endpoint();
    const h1At = (bytes: number): string =>
      `HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: ${DATE}\r\nx-pad: ${padFor(bytes)}\r\n\r\nok`;
    const h1Answers = {
      h1under: h1At(LIMIT - 1),
      h1at: h1At(LIMIT),
      h1huge: `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${Object.entries(bigFields())
        .map(([name, value]) => `${name}: ${String(value)}\r\n`)
        .join('')}\r\nok`,
    };
    const endpoints: Record<string, string[]> = {
      h2: [h2.endpoint],
      g: [h2.endpoint],
      h2huge: [h2.endpoint],
    };
    for (const [name, text] of Object.entries(h1Answers)) {
      const raw = await startRawEndpoint(text);
      raws.push(raw);
      endpoints[name] = [raw.endpoint];
    }
    // One attempt, and an ejection on the first gateway failure: the accounting of one over-limit head shows.
    const strict = {
      retries: { attempts: 1 },
      outlierDetection: { consecutiveGatewayFailure: 1, maxEjectionPercent: 100 },
    };
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints },
      upstreams: {
        h2: { protocol: 'http2' },
        g: { protocol: 'grpc' },
        h2huge: { protocol: 'http2', ...strict },
        h1huge: strict,
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh?.close();
    for (const raw of raws) await raw.close();
    await new Promise<void>((r) => (h2 ? h2.server.close(() => r()) : r()));
  });

  it('200 header fields and 200 trailer fields all reach the caller (over node:http2 default of 128)', async () => {
    const reply = await h2Get(mesh.outbound, 'h2', '/many');
    expect(reply.error).toBeUndefined();
    expect(reply.headers[':status']).toBe(200);
    expect(reply.body.toString()).toBe('ok');
    expect(named(reply.headers, 'x-f-')).toHaveLength(200);
    expect(reply.headers['x-f-199']).toBe('v199');
    expect(named(reply.trailers, 'x-t-')).toHaveLength(200);
    expect(reply.trailers?.['x-t-199']).toBe('v199');
  });

  it('a gRPC call gets 200 metadata entries and 200 trailing entries with grpc-status 0', async () => {
    const reply = await grpcCall(mesh.outbound, 'g', '/pkg.Svc/Many');
    expect(reply.error).toBeUndefined();
    expect(reply.headers[':status']).toBe(200);
    expect(named(reply.headers, 'x-md-')).toHaveLength(200);
    expect(reply.body.subarray(5).toString()).toBe('reply');
    expect(reply.trailers?.['grpc-status']).toBe('0');
    expect(named(reply.trailers, 'x-tr-')).toHaveLength(200);
  });

  it('the same byte limit decides over HTTP/2 as over HTTP/1.1: one byte under passes, at the limit is 502', async () => {
    const h1Get = async (host: string): Promise<ReturnType<typeof parseReply>> =>
      parseReply(
        await rawRequest(
          Number(new URL(mesh.outbound).port),
          `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
        ),
      );
    const h1Under = await h1Get('h1under');
    const h1At = await h1Get('h1at');
    expect(h1Under.status).toBe(200);
    expect(h1At.status).toBe(502);
    expect(h1At.headers['x-meshlet-error']).toBe('upstream_unreachable');

    const under = await h2Get(mesh.outbound, 'h2', `/pad/${LIMIT - 1}`);
    expect(under.error).toBeUndefined();
    expect(under.headers[':status']).toBe(200);
    expect(under.headers['x-pad']).toBe(padFor(LIMIT - 1));
    expect(under.body.toString()).toBe('ok');
    const at = await h2Get(mesh.outbound, 'h2', `/pad/${LIMIT}`);
    expect(at.headers[':status']).toBe(502);
    expect(at.headers['x-meshlet-error']).toBe('upstream_unreachable');
    const message = (JSON.parse(at.body.toString()) as { message: string }).message;
    expect(message).toBe(`endpoint ${h2.endpoint}: response headers too large (UND_ERR_HEADERS_OVERFLOW)`);
    expect(JSON.parse(h1At.body)).toMatchObject({
      message: expect.stringContaining('response headers too large (UND_ERR_HEADERS_OVERFLOW)'),
    });
  });

  it('an over-limit head gets the 502 and message of HTTP/1.1, and counts against the endpoint the same way', async () => {
    const h2Reply = await h2Get(mesh.outbound, 'h2huge', '/huge');
    expect(h2Reply.error).toBeUndefined();
    expect(h2Reply.headers[':status']).toBe(502);
    expect(h2Reply.headers['x-meshlet-error']).toBe('upstream_unreachable');
    const body = JSON.parse(h2Reply.body.toString()) as { error: string; message: string; upstream: string };
    expect(body).toEqual({
      error: 'upstream_unreachable',
      message: `endpoint ${h2.endpoint}: response headers too large (UND_ERR_HEADERS_OVERFLOW)`,
      upstream: 'h2huge',
    });
    const h1Reply = await h2Get(mesh.outbound, 'h1huge', '/');
    expect(h1Reply.headers[':status']).toBe(502);
    expect((JSON.parse(h1Reply.body.toString()) as { message: string }).message).toContain(
      'response headers too large (UND_ERR_HEADERS_OVERFLOW)',
    );
    // The same attempt outcome and the same outlier ejection (a gateway failure) on both.
    for (const metric of ['meshlet_upstream_attempts_total', 'meshlet_outlier_ejections_total']) {
      const overH2 = await metricLines(mesh, metric, 'h2huge');
      expect(overH2, metric).toEqual(await metricLines(mesh, metric, 'h1huge'));
      expect(overH2.length, metric).toBeGreaterThan(0);
    }
    expect(await metricLines(mesh, 'meshlet_upstream_attempts_total', 'h2huge')).toContain(
      'meshlet_upstream_attempts_total{upstream="U",result="reset"} 1',
    );
    expect(await metricLines(mesh, 'meshlet_outlier_ejections_total', 'h2huge')).toContain(
      'meshlet_outlier_ejections_total{upstream="U",kind="gateway"} 1',
    );
  });

  it('over-limit trailers do not reach the caller: read with the head, they make the answer a 502', async () => {
    const reply = await h2Get(mesh.outbound, 'h2', '/huge-trailers');
    expect(named(reply.trailers, 'x-big-')).toEqual([]);
    // Head, body and trailers come in one read: the answer fails before its head went out (see
    // Exchange's one-turn hold), so the caller gets meshlet's 502 rather than a cut stream.
    expect(reply.error).toBeUndefined();
    expect(reply.headers[':status']).toBe(502);
    expect(reply.headers['x-meshlet-error']).toBe('upstream_unreachable');
  });

  it('a gRPC call whose head or trailers are over the limit ends UNAVAILABLE with the reason', async () => {
    for (const path of ['/pkg.Svc/Huge', '/pkg.Svc/HugeTrailers']) {
      const reply = await grpcCall(mesh.outbound, 'g', path);
      expect(reply.error, path).toBeUndefined();
      const status = { ...reply.headers, ...reply.trailers };
      expect(status['grpc-status'], path).toBe('14');
      expect(decodeURIComponent(String(status['grpc-message'])), path).toContain(
        'response headers too large (UND_ERR_HEADERS_OVERFLOW)',
      );
      expect(named(status, 'x-big-'), path).toEqual([]);
    }
  });
});

describe("the SETTINGS meshlet's HTTP/2 client announces to an endpoint", () => {
  let raw: RawH2Server;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    raw = await startRawH2Server({ onRequest: (s) => s.conn.ok(s.id, 'reply') });
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { g: [raw.endpoint] } },
      upstreams: { g: { protocol: 'grpc' } },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh?.close();
    await raw?.close();
  });

  it('SETTINGS_MAX_HEADER_LIST_SIZE covers every head within the byte limit (32 octets more per field, RFC 9113 §6.5.2)', async () => {
    const reply = await grpcCall(mesh.outbound, 'g', '/pkg.Svc/Call');
    expect(reply.trailers?.['grpc-status']).toBe('0');
    // A head under LIMIT bytes has at most LIMIT - 1 fields of 1 byte, plus `:status` (7 + 3).
    const largest = LIMIT - 1 + 10 + 32 * LIMIT;
    expect(raw.settings.get(0x6)).toBeGreaterThanOrEqual(largest);
    expect(raw.settings.get(0x6)).toBeLessThan(largest + 1024);
  });
});

describe('response heads from a peer meshlet over mTLS (ALPN h2)', () => {
  let pki: TestPki;
  let app: Awaited<ReturnType<typeof startH2Endpoint>>;
  let b: InProcessMeshlet;
  let a: InProcessMeshlet;

  beforeAll(async () => {
    pki = await makePki();
    app = await startH2Endpoint();
    b = await startMeshlet({
      service: { name: 'orders', port: Number(app.endpoint.split(':')[1]), protocol: 'http2' },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'orders'),
      accessLog: { enabled: false },
    });
    a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: { type: 'static', endpoints: { orders: [peerEndpoint(b)] } },
      upstreams: { orders: { protocol: 'http2', retries: { attempts: 1 } } },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await new Promise<void>((r) => (app ? app.server.close(() => r()) : r()));
  });

  it('200 header fields and 200 trailer fields cross both meshlets', async () => {
    const reply = await h2Get(a.outbound, 'orders', '/many');
    expect(reply.error).toBeUndefined();
    expect(reply.headers[':status']).toBe(200);
    expect(reply.body.toString()).toBe('ok');
    expect(named(reply.headers, 'x-f-')).toHaveLength(200);
    expect(named(reply.trailers, 'x-t-')).toHaveLength(200);
  });

  it("an over-limit head from the app is B's 502 with the reason, passed on by A", async () => {
    const reply = await h2Get(a.outbound, 'orders', '/huge');
    expect(reply.headers[':status']).toBe(502);
    expect(reply.headers['x-meshlet-error']).toBe('upstream_unreachable');
    expect((JSON.parse(reply.body.toString()) as { message: string }).message).toContain(
      'response headers too large (UND_ERR_HEADERS_OVERFLOW)',
    );
  });
});
