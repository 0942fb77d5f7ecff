// Rapid Reset (CVE-2023-44487) against meshlet's HTTP/2 listeners: the session closes, counted and logged per listener, the endpoint never blamed.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMeshlet, type InProcessMeshlet } from '../helpers/meshlet.ts';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { metricValue } from '../helpers/metrics.ts';
import { upstreamState } from '../helpers/upstream-state.ts';
import { freePort } from '../registry/servers.ts';
import { makePki, tempDir, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import * as F from './h2-frames.ts';

/** Requests the upstream saw end before it answered (cancelled by meshlet). */
let cancelled = 0;

const suite = meshletSuite(
  (up) => ({
    registry: { type: 'static', endpoints: { users: [up.endpoint] } },
    upstreams: {
      users: {
        // Hair triggers: a single cancel counted against the endpoint would show.
        outlierDetection: { consecutive5xx: 2, consecutiveGatewayFailure: 2 },
        circuitBreaker: { volumeThreshold: 2, errorThresholdPercentage: 1 },
      },
    },
  }),
  // Answers after 50 ms: long enough for a client to reset the stream while meshlet waits for it.
  (req, res) => {
    req.on('close', () => {
      if (!res.writableEnded) cancelled++;
    });
    req.resume();
    setTimeout(() => {
      if (!res.destroyed) res.end('ok');
    }, 50);
  },
);

const outboundPort = (): number => suite.port;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `meshlet_http2_sessions_closed_total{listener,reason}` on `admin`, 0 when absent. */
const closedForAbuse = (admin: string, listener: string, reason: string): Promise<number> =>
  metricValue(admin, 'meshlet_http2_sessions_closed_total', { listener, reason });

/** The `http2 session closed for abuse` warnings `meshlet` has logged, without `time` and `service`. */
const abuseLines = (meshlet: InProcessMeshlet): Record<string, unknown>[] =>
  meshlet.logs
    .filter((l) => l['msg'] === 'http2 session closed for abuse')
    .map(({ time: _t, service: _s, ...rest }) => rest);

/** What a Rapid Reset close from this test's client logs on `listener`. */
function rapidResetLine(listener: string): Record<string, unknown> {
  return {
    level: 'warn',
    msg: 'http2 session closed for abuse',
    peer: expect.stringMatching(/^(::ffff:)?127\.0\.0\.1$/),
    reason: 'rapid_reset',
    listener,
    // Closed at the 500th stream or soon after, half or more of them reset before an answer.
    streams: expect.toSatisfy((n: number) => n >= 500 && n <= 600),
    prematureResets: expect.toSatisfy((n: number) => n >= 250),
  };
}

/** The `users` endpoint's state, its breaker and active ejections from `GET /upstreams`. */
async function endpointState(): Promise<{ state: string; breaker: string; ejections: number }> {
  const u = await upstreamState(suite.mesh.admin, 'users');
  return {
    state: u.endpoints[0]!.state,
    breaker: u.circuitBreaker,
    ejections: u.outlierDetection.ejectionsActive,
  };
}

/** Sends `count` HEADERS+RST_STREAM pairs in batches of 100 (under nghttp2's own burst of 1,000) until GOAWAY. */
async function rapidReset(raw: F.RawH2, authority: string, count: number): Promise<number> {
  let id = 1;
  for (let sent = 0; sent < count && raw.goaway === null && !raw.socket.destroyed; sent += 100) {
    const frames: Buffer[] = [];
    for (let i = 0; i < 100; i++, id += 2)
      frames.push(F.headers(id, F.requestBlock(authority)), F.rstStream(id));
    raw.write(Buffer.concat(frames));
    await raw.drained();
    await pause(20);
  }
  await raw.until(() => raw.goaway !== null, 3000);
  return (id - 1) / 2;
}

describe('outbound listener (h2c)', () => {
  it('closes a session that opens and resets 900 streams with GOAWAY ENHANCE_YOUR_CALM by its ~500th, counts it and logs who', async () => {
    const before = await closedForAbuse(suite.mesh.admin, 'outbound', 'rapid_reset');
    const seen = suite.up.requests.length;
    const raw = await F.RawH2.open(outboundPort());
    try {
      await rapidReset(raw, 'users', 900);
      // Without meshlet's guard nghttp2 lets 1,000 resets through before it acts (and 33 a second after).
      expect(raw.goaway).toEqual({ lastStreamId: expect.any(Number), code: F.H2Error.ENHANCE_YOUR_CALM });
      expect(raw.goaway!.lastStreamId).toBeLessThanOrEqual(2 * 600);
      expect(await raw.until(() => raw.socket.destroyed, 2000)).toBe(true);
      expect(await closedForAbuse(suite.mesh.admin, 'outbound', 'rapid_reset')).toBe(before + 1);
      expect(abuseLines(suite.mesh)).toEqual([rapidResetLine('outbound')]);
      const line = abuseLines(suite.mesh)[0]!;
      expect(2 * (line['prematureResets'] as number)).toBeGreaterThanOrEqual(line['streams'] as number);
      // A stream reset with its HEADERS never costs the endpoint a request, nor its health.
      expect(suite.up.requests.length - seen).toBeLessThan(50);
      expect(await endpointState()).toEqual({ state: 'healthy', breaker: 'closed', ejections: 0 });
    } finally {
      raw.destroy();
    }
  }, 15_000);

  it('closes a session that resets each stream once the endpoint has it: at most ~500 requests reach it, none blamed; counted, not logged again', async () => {
    const before = await closedForAbuse(suite.mesh.admin, 'outbound', 'rapid_reset');
    const seen = suite.up.requests.length;
    const cancelledBefore = cancelled;
    const raw = await F.RawH2.open(outboundPort());
    try {
      let id = 1;
      for (let round = 0; round < 15 && raw.goaway === null && !raw.socket.destroyed; round++) {
        const ids: number[] = [];
        const frames: Buffer[] = [];
        for (let i = 0; i < 50; i++, id += 2) {
          ids.push(id);
          frames.push(F.headers(id, F.requestBlock('users')));
        }
        const target = suite.up.requests.length + ids.length;
        raw.write(Buffer.concat(frames));
        await raw.until(() => suite.up.requests.length >= target || raw.socket.destroyed, 2000);
        raw.write(Buffer.concat(ids.map((i) => F.rstStream(i))));
        await raw.drained();
      }
      expect(await raw.until(() => raw.goaway !== null, 3000)).toBe(true);
      expect(raw.goaway!.code).toBe(F.H2Error.ENHANCE_YOUR_CALM);
      const reached = suite.up.requests.length - seen;
      expect(reached).toBeGreaterThanOrEqual(450);
      expect(reached).toBeLessThanOrEqual(560);
      // meshlet cancelled what it had sent on (the upstream saw those requests end unanswered).
      await pause(200);
      expect(cancelled - cancelledBefore).toBeGreaterThanOrEqual(reached - 60);
      expect(await endpointState()).toEqual({ state: 'healthy', breaker: 'closed', ejections: 0 });
      expect(await closedForAbuse(suite.mesh.admin, 'outbound', 'rapid_reset')).toBe(before + 1);
      // The same peer and reason within 10 min: the first warning stands for it (a flood cannot flood the log).
      expect(abuseLines(suite.mesh)).toHaveLength(1);
    } finally {
      raw.destroy();
    }
  }, 15_000);

  it('keeps the session of a client that cancels fewer than half of 700 calls', async () => {
    const raw = await F.RawH2.open(outboundPort());
    try {
      let id = 1;
      const kept: number[] = [];
      for (let round = 0; round < 7; round++) {
        const frames: Buffer[] = [];
        for (let i = 0; i < 100; i++, id += 2) {
          frames.push(F.headers(id, F.requestBlock('users')));
          // 2 in 5 cancelled at once (a client whose deadlines expire), the others waited for.
          if (i % 5 < 2) frames.push(F.rstStream(id));
          else kept.push(id);
        }
        raw.write(Buffer.concat(frames));
        await raw.until(() => kept.every((k) => raw.answered.has(k)) || raw.goaway !== null, 5000);
      }
      expect(raw.goaway).toBeNull();
      expect(kept.every((k) => raw.answered.has(k))).toBe(true);
      raw.write(F.headers(id, F.requestBlock('users')));
      expect(await raw.until(() => raw.answered.has(id), 3000)).toBe(true);
      expect(raw.socket.destroyed).toBe(false);
    } finally {
      raw.destroy();
    }
  }, 15_000);
});

describe('inbound listener (mTLS, ALPN h2)', () => {
  let pki: TestPki;
  let b: InProcessMeshlet;
  let client: { ca: Buffer; cert: Buffer; key: Buffer };

  beforeAll(async () => {
    pki = await makePki();
    b = await startMeshlet({
      service: { name: 'orders', port: suite.up.port },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
    const leaf = await pki.write('web');
    client = { ca: readFileSync(pki.caFile), cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) };
  });

  afterAll(async () => {
    await b?.close();
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('closes a peer session that opens and resets 900 streams with GOAWAY ENHANCE_YOUR_CALM, counted and logged by this daemon only', async () => {
    const seen = suite.up.requests.length;
    const raw = await F.RawH2.open(b.daemon.addresses().inbound!.port, { tls: client });
    try {
      await rapidReset(raw, 'orders', 900);
      expect(raw.goaway?.code).toBe(F.H2Error.ENHANCE_YOUR_CALM);
      expect(raw.goaway!.lastStreamId).toBeLessThanOrEqual(2 * 600);
      expect(await closedForAbuse(b.admin, 'inbound', 'rapid_reset')).toBe(1);
      expect(abuseLines(b)).toEqual([rapidResetLine('inbound')]);
      // Two daemons in one process: neither counts the other's closes.
      expect(await closedForAbuse(b.admin, 'outbound', 'rapid_reset')).toBe(0);
      expect(await closedForAbuse(suite.mesh.admin, 'inbound', 'rapid_reset')).toBe(0);
      expect(abuseLines(suite.mesh).every((l) => l['listener'] === 'outbound')).toBe(true);
      expect(suite.up.requests.length - seen).toBeLessThan(50);
    } finally {
      raw.destroy();
    }
  }, 15_000);
});

describe('per-upstream and gateway (TLS) listeners', () => {
  let g: InProcessMeshlet;
  let dir: string;
  let ca: Buffer;

  beforeAll(async () => {
    const pki = await makePki();
    const leaf = await pki.issue('gw');
    ca = Buffer.from(pki.ca.certPem);
    dir = tempDir();
    writeFileSync(join(dir, 'gw.pem'), leaf.certPem);
    writeFileSync(join(dir, 'gw.key'), leaf.keyPem);
    g = await startMeshlet({
      registry: { type: 'static', endpoints: { users: [suite.up.endpoint] } },
      upstreams: { users: { port: await freePort() } },
      listeners: {
        gateway: {
          address: '127.0.0.1',
          port: 0,
          tls: { cert: join(dir, 'gw.pem'), key: join(dir, 'gw.key') },
        },
      },
      gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'users' }] },
    });
  });

  afterAll(async () => {
    await g?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('a per-upstream port counts and logs its Rapid Reset close under listener="upstream"', async () => {
    const raw = await F.RawH2.open(g.daemon.addresses().upstreams['users']!.port);
    try {
      await rapidReset(raw, 'users', 900);
      expect(raw.goaway?.code).toBe(F.H2Error.ENHANCE_YOUR_CALM);
      expect(await closedForAbuse(g.admin, 'upstream', 'rapid_reset')).toBe(1);
      expect(await closedForAbuse(g.admin, 'outbound', 'rapid_reset')).toBe(0);
      expect(abuseLines(g)).toEqual([rapidResetLine('upstream')]);
    } finally {
      raw.destroy();
    }
  }, 15_000);

  it('the gateway counts and logs a CONTINUATION flood under listener="gateway"', async () => {
    const port = g.daemon.addresses().gateway!.port;
    const raw = await F.RawH2.open(port, { tls: { ca } });
    try {
      raw.write(F.headersUnfinished(1, F.requestBlock('users')));
      for (let b = 0; b < 50 && !raw.socket.destroyed; b++) {
        const block = F.continuation(1, F.literal('x-a', 'b'.repeat(100)));
        raw.write(Buffer.concat(Array.from({ length: 1000 }, () => block)));
        await Promise.race([raw.drained(), pause(200)]);
      }
      expect(await raw.until(() => raw.socket.destroyed, 3000)).toBe(true);
      expect(await closedForAbuse(g.admin, 'gateway', 'continuation_flood')).toBe(1);
      expect(abuseLines(g).filter((l) => l['listener'] === 'gateway')).toEqual([
        {
          level: 'warn',
          msg: 'http2 session closed for abuse',
          peer: expect.stringMatching(/^(::ffff:)?127\.0\.0\.1$/),
          reason: 'continuation_flood',
          listener: 'gateway',
        },
      ]);
    } finally {
      raw.destroy();
    }
  }, 15_000);
});
