// A peer meshlet's refusal of a request as the caller's fault (x-meshlet-error bad_request…) counts against no endpoint, and headers the calling meshlet adds fit the peer's limit.
import { createServer, type Server } from 'node:http';
import * as http2 from 'node:http2';
import { type AddressInfo, connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { isPeerClientFault } from '../../src/proxy/upstream-failure.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { type EchoServer, startEchoServer } from '../helpers/grpc.ts';
import { scrapeMetrics, sampleSum } from '../helpers/metrics.ts';
import { upstreamState } from '../helpers/upstream-state.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { grpcFrame, type RawH2Server, startRawH2Server } from '../grpc/raw-h2-server.ts';

/** The peers' (B1, B2) inbound header limit: below A's fixed 16 KiB, so A forwards what they refuse. */
const PEER_LIMIT = 8 * 1024;
/** Metadata A accepts (under its 16 KiB) and B1, B2 refuse (over their 8 KiB, plus 1 KiB of room). */
const OVERSIZED = 12_000;
/** Calls per test: twelve such calls over two peers ejected one before the fix. */
const CALLS = 12;

let pki: TestPki;
let apps: EchoServer[];
let b1: InProcessMeshlet;
let b2: InProcessMeshlet;
/** A peer with the default inbound limit (16 KiB), behind A's upstream `ledger`. */
let b3: InProcessMeshlet;
/** An HTTP/1.1 app with room for large heads, and its peer B4 (default limit), behind `audit`. */
let httpApp: Server;
let httpSeen = 0;
let b4: InProcessMeshlet;
/** Plain (no mTLS) endpoints that answer INTERNAL with `x-meshlet-error: bad_request`. */
let liars: RawH2Server[];
/** A: gRPC upstreams `orders` (B1, B2), `ledger` (B3) and `liars`. */
let a: InProcessMeshlet;
/** A for HTTP/1.1: upstream `orders` (B1, B2) over HTTP/1.1, 408 and 413 listed in `retryOn`. */
let ah1: InProcessMeshlet;

const outlier = { consecutive5xx: 3, consecutiveGatewayFailure: 3, baseEjectionTime: 30_000 };
const breaker = { volumeThreshold: 4, errorThresholdPercentage: 50, resetTimeout: 30_000 };

beforeAll(async () => {
  pki = await makePki();
  apps = await Promise.all([startEchoServer('b1'), startEchoServer('b2'), startEchoServer('b3')]);
  // Started one after the other: B1 and B2 write the same `orders` key files.
  const peer = async (service: string, app: EchoServer, maxHeaderSize?: number) =>
    startMeshlet({
      service: { name: service, port: app.port, protocol: 'grpc' },
      listeners: {
        inbound: {
          address: '127.0.0.1',
          port: 0,
          allow: ['web'],
          ...(maxHeaderSize === undefined ? {} : { maxHeaderSize }),
        },
      },
      tls: await tlsFilesConfig(pki, service),
    });
  b1 = await peer('orders', apps[0]!, PEER_LIMIT);
  b2 = await peer('orders', apps[1]!, PEER_LIMIT);
  b3 = await peer('ledger', apps[2]!);
  httpApp = createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
    httpSeen++;
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((r) => httpApp.listen(0, '127.0.0.1', r));
  b4 = await startMeshlet({
    service: { name: 'audit', port: (httpApp.address() as AddressInfo).port },
    listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
    tls: await tlsFilesConfig(pki, 'audit'),
  });
  liars = await Promise.all(
    [0, 1].map(() =>
      startRawH2Server({
        onRequest: (s) =>
          s.conn.headers(
            s.id,
            [
              [':status', '200'],
              ['content-type', 'application/grpc'],
              ['grpc-status', '13'],
              ['grpc-message', 'refused'],
              ['x-meshlet-error', 'bad_request'],
            ],
            true,
          ),
      }),
    ),
  );
  a = await startMeshlet({
    tls: await tlsFilesConfig(pki, 'web'),
    registry: {
      type: 'static',
      endpoints: {
        orders: [peerEndpoint(b1), peerEndpoint(b2)],
        ledger: [peerEndpoint(b3)],
        liars: liars.map((l) => l.endpoint),
      },
    },
    upstreams: {
      // `internal` is retried: a refusal counted as the endpoint's INTERNAL would be sent again.
      orders: {
        protocol: 'grpc',
        retries: { attempts: 2, retryOn: ['connect-failure', 'unavailable', 'internal'] },
        outlierDetection: outlier,
        circuitBreaker: breaker,
      },
      ledger: { protocol: 'grpc' },
      liars: { protocol: 'grpc', outlierDetection: outlier },
    },
  });
  ah1 = await startMeshlet({
    tls: await tlsFilesConfig(pki, 'web'),
    registry: {
      type: 'static',
      endpoints: { orders: [peerEndpoint(b1), peerEndpoint(b2)], audit: [peerEndpoint(b4)] },
    },
    upstreams: {
      orders: {
        retries: { attempts: 3, retryOn: [408, 413, 'gateway-error'] },
        outlierDetection: outlier,
        circuitBreaker: breaker,
      },
    },
  });
}, 30_000);

afterAll(async () => {
  await a?.close();
  await ah1?.close();
  await Promise.all([b1?.close(), b2?.close(), b3?.close(), b4?.close()]);
  httpApp?.closeAllConnections();
  await new Promise((r) => httpApp?.close(r));
  for (const app of apps ?? []) app.close();
  await Promise.all((liars ?? []).map((l) => l.close()));
});

/** An Echo/Unary request message: empty, or `fail_code` (field 3) set. */
function echoRequest(failCode = 0): Buffer {
  return grpcFrame(failCode === 0 ? Buffer.alloc(0) : Buffer.from([0x18, failCode]));
}

/** What a raw gRPC call got: response headers and trailers merged (a Trailers-Only answer has no trailers). */
type Answer = Record<string, string | string[] | number | undefined>;

/** A request's header block as meshlet's listeners count it: `name: value\r\n` per field, pseudo-headers included. */
function blockBytes(headers: Record<string, string>): number {
  let n = 0;
  for (const [name, value] of Object.entries(headers)) n += name.length + value.length + 4;
  return n;
}

/**
 * One Echo/Unary call over h2c to A's outbound listener, naming `authority`, with `x-request-id: id`
 * and metadata `x-big` padding the header block to `blockSize` bytes as A counts it (0: no padding).
 */
function call(authority: string, id: string, blockSize: number, failCode = 0): Promise<Answer> {
  const headers: Record<string, string> = {
    ':method': 'POST',
    ':path': '/meshlet.test.v1.Echo/Unary',
    ':scheme': 'http',
    ':authority': authority,
    'content-type': 'application/grpc',
    te: 'trailers',
    'x-request-id': id,
  };
  if (blockSize > 0) {
    const pad = blockSize - blockBytes(headers) - 'x-big'.length - 4;
    headers['x-big'] = 'm'.repeat(pad);
    expect(blockBytes(headers)).toBe(blockSize);
  }
  return new Promise((resolve, reject) => {
    const session = http2.connect(a.outbound);
    session.on('error', reject);
    const s = session.request(headers);
    const answer: Answer = {};
    s.on('response', (h) => Object.assign(answer, h));
    s.on('trailers', (t) => Object.assign(answer, t));
    s.on('data', () => {});
    s.on('error', reject);
    s.on('close', () => {
      session.close();
      resolve(answer);
    });
    s.end(echoRequest(failCode));
  });
}

/** The outbound access line of request `id` on meshlet `m`. */
function accessLine(m: InProcessMeshlet, id: string): Record<string, unknown> | undefined {
  return m.logs.find((l) => l.msg === 'access' && l.requestId === id && l.direction !== 'inbound');
}

/** How many inbound access lines of `m` carry an id starting with `prefix` and error `code`. */
function inboundRefusals(m: InProcessMeshlet, prefix: string, code: string): number {
  return m.logs.filter(
    (l) =>
      l.msg === 'access' &&
      l.direction === 'inbound' &&
      String(l.requestId).startsWith(prefix) &&
      l.error === code,
  ).length;
}

/** Counters of upstream `name` on meshlet `m`: ejections, retries. */
async function counters(m: InProcessMeshlet, name: string): Promise<{ ejections: number; retries: number }> {
  const text = await scrapeMetrics(m.admin);
  return {
    ejections: sampleSum(text, 'meshlet_outlier_ejections_total', { upstream: name }),
    retries: sampleSum(text, 'meshlet_retries_total', { upstream: name }),
  };
}

/** Waits up to 2 s for `check` to stop throwing. */
async function eventually(check: () => void): Promise<void> {
  const deadline = Date.now() + 2000;
  for (;;) {
    try {
      check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

describe("a peer meshlet's client-fault refusal counts against no endpoint", () => {
  it(`gRPC: ${CALLS} calls with metadata over the peers' limit: INTERNAL bad_request to the caller, once each; no ejection, no retry, breaker closed`, async () => {
    for (let i = 0; i < CALLS; i++) {
      const id = `pcf-grpc-${i}`;
      const r = await call('orders', id, OVERSIZED);
      expect(r[':status']).toBe(200);
      expect(r['grpc-status']).toBe('13');
      expect(r['x-meshlet-error']).toBe('bad_request');
      // Before the fix: 2 (the refusal, read as the endpoint's INTERNAL, was retried).
      expect(r['x-meshlet-attempts']).toBe('1');
      expect(accessLine(a, id)).toMatchObject({ status: 200, grpcStatus: 13, attempts: 1 });
    }
    // Both peers refused (round robin), and only them: the app never saw a call.
    await eventually(() => {
      expect(inboundRefusals(b1, 'pcf-grpc-', 'bad_request')).toBeGreaterThan(0);
      expect(inboundRefusals(b2, 'pcf-grpc-', 'bad_request')).toBeGreaterThan(0);
      expect(
        inboundRefusals(b1, 'pcf-grpc-', 'bad_request') + inboundRefusals(b2, 'pcf-grpc-', 'bad_request'),
      ).toBe(CALLS);
    });
    expect(apps[0]!.calls.length + apps[1]!.calls.length).toBe(0);
    // Before the fix: an ejection (kind 5xx), 12 retries, the breaker open.
    expect(await counters(a, 'orders')).toEqual({ ejections: 0, retries: 0 });
    const state = await upstreamState(a.admin, 'orders');
    expect(state.circuitBreaker).toBe('closed');
    expect(state.healthy).toBe(2);
  });

  // A guard: an HTTP refusal (400, 405, 408, 413) is never a 5xx, and 400 is never retried (retryOn cannot list a code below 408).
  it(`HTTP/1.1: ${CALLS} requests with a header over the peers' limit: 400 bad_request, once each; no ejection, no retry`, async () => {
    for (let i = 0; i < CALLS; i++) {
      const id = `pcf-h1-${i}`;
      const res = await request(`${ah1.outbound}/big`, {
        headers: { host: 'orders', 'x-request-id': id, 'x-big': 'h'.repeat(OVERSIZED) },
      });
      await res.body.dump();
      expect(res.statusCode).toBe(400);
      expect(res.headers['x-meshlet-error']).toBe('bad_request');
      expect(res.headers['x-meshlet-attempts']).toBe('1');
      expect(accessLine(ah1, id)).toMatchObject({ status: 400, attempts: 1 });
    }
    expect(await counters(ah1, 'orders')).toEqual({ ejections: 0, retries: 0 });
    const state = await upstreamState(ah1.admin, 'orders');
    expect(state.circuitBreaker).toBe('closed');
    expect(state.healthy).toBe(2);
  });

  it('a plain endpoint (no mTLS: not a peer meshlet) that sends x-meshlet-error is judged by its status: its INTERNALs eject it', async () => {
    for (let i = 0; i < CALLS; i++) {
      const r = await call('liars', `pcf-liar-${i}`, 0);
      expect(r['grpc-status']).toBe('13');
    }
    expect((await counters(a, 'liars')).ejections).toBeGreaterThan(0);
  });

  it('a peer whose app fails (UNAVAILABLE) still counts: ejected, retried, breaker open', async () => {
    for (let i = 0; i < CALLS; i++) {
      const r = await call('orders', `pcf-fail-${i}`, 0, 14);
      expect(r['grpc-status']).toBe('14');
    }
    const c = await counters(a, 'orders');
    expect(c.ejections).toBeGreaterThan(0);
    expect(c.retries).toBeGreaterThan(0);
    expect((await upstreamState(a.admin, 'orders')).circuitBreaker).toBe('open');
  });
});

describe('headers the calling meshlet adds fit the peer meshlet (same default limits)', () => {
  it("metadata just under A's 16 KiB passes A and B (default 16 KiB) and reaches the app", async () => {
    const before = apps[2]!.calls.length;
    // 16 KiB less 40 bytes as A counts it: x-request-id, x-forwarded-*, x-meshlet-timeout-ms and
    // :scheme https add ~90 bytes more on the way to B.
    const r = await call('ledger', 'pcf-fits', 16 * 1024 - 40);
    // Before the fix: INTERNAL bad_request from B ("request headers too large").
    expect(r['x-meshlet-error']).toBeUndefined();
    expect(r['grpc-status']).toBe('0');
    expect(apps[2]!.calls.length - before).toBe(1);
  });

  it("HTTP/1.1: a head just under A's 16 KiB passes A and B (default 16 KiB) and reaches the app", async () => {
    const before = httpSeen;
    // A raw head of exactly 16 KiB (Node's parser takes up to ~16,408 bytes): A adds ~110 bytes.
    const start = 'GET /fits HTTP/1.1\r\nhost: audit\r\nx-request-id: pcf-h1-fits\r\nx-big: ';
    const head = `${start}${'f'.repeat(16 * 1024 - start.length - 4)}\r\n\r\n`;
    expect(head.length).toBe(16 * 1024);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(ah1.outbound).port), '127.0.0.1', () => socket.write(head));
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if (text.includes('\r\n\r\n')) {
          socket.destroy();
          resolve(text);
        }
      });
      socket.on('error', reject);
    });
    // Before the fix: 400 with x-meshlet-error: bad_request from B.
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(httpSeen - before).toBe(1);
  });

  it("a block over A's limit is refused by A itself, before any peer", async () => {
    const r = await call('ledger', 'pcf-over-a', 16 * 1024 + 1);
    expect(r['x-meshlet-error']).toBe('bad_request');
    expect(accessLine(a, 'pcf-over-a')).toMatchObject({ attempts: 0, error: 'bad_request' });
  });
});

describe("which answers are a peer meshlet's client-fault refusal (isPeerClientFault)", () => {
  const cases: [string, Record<string, string | string[]>, number, number | undefined, boolean][] = [
    ['gRPC bad_request → INTERNAL', { 'x-meshlet-error': 'bad_request' }, 200, 13, true],
    ['gRPC request_timeout → DEADLINE_EXCEEDED', { 'x-meshlet-error': 'request_timeout' }, 200, 4, true],
    ['gRPC body_too_large → RESOURCE_EXHAUSTED', { 'x-meshlet-error': 'body_too_large' }, 200, 8, true],
    ['HTTP 400 bad_request', { 'x-meshlet-error': 'bad_request' }, 400, undefined, true],
    ['HTTP 413 body_too_large', { 'x-meshlet-error': 'body_too_large' }, 413, undefined, true],
    [
      'a code meshlet never answers with that status (UNAVAILABLE)',
      { 'x-meshlet-error': 'bad_request' },
      200,
      14,
      false,
    ],
    [
      'a code meshlet never answers with that status (503)',
      { 'x-meshlet-error': 'bad_request' },
      503,
      undefined,
      false,
    ],
    [
      'not a client fault (the peer could not reach its app)',
      { 'x-meshlet-error': 'upstream_unreachable' },
      502,
      undefined,
      false,
    ],
    ['not a client fault (overloaded)', { 'x-meshlet-error': 'overloaded' }, 200, 8, false],
    ['an unknown code', { 'x-meshlet-error': '__proto__' }, 400, undefined, false],
    ['the header twice', { 'x-meshlet-error': ['bad_request', 'bad_request'] }, 400, undefined, false],
    ['no header', {}, 200, 13, false],
  ];
  for (const [name, headers, status, grpcStatus, expected] of cases) {
    it(`${name}: ${expected}`, () => {
      expect(isPeerClientFault(headers, status, grpcStatus)).toBe(expected);
    });
  }
});
