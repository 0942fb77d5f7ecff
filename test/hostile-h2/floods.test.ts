// Frame floods, HPACK bombs, stream limits and slow readers against meshlet's h2c listeners: closed, counted and logged per listener, memory bounded.
import { beforeAll, describe, expect, it } from 'vitest';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { metricValue } from '../helpers/metrics.ts';
import * as F from './h2-frames.ts';

/** Bytes the upstream has written of `/big` responses. */
let bigWritten = 0;

const suite = meshletSuite(
  (up) => ({
    registry: { type: 'static', endpoints: { users: [up.endpoint] } },
    listeners: { gateway: { address: '127.0.0.1', port: 0 } },
    gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'users' }] },
  }),
  (req, res) => {
    req.resume();
    if (req.url !== '/big') return void res.end('ok');
    // Up to 64 MiB per response, as fast as meshlet takes it.
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 1);
    let left = 1024;
    const pump = (): void => {
      while (left-- > 0 && !res.destroyed) {
        bigWritten += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  },
);

beforeAll(async () => {
  // node:http2 and the pool load on first use: not part of what is measured.
  const raw = await F.RawH2.open(port());
  raw.write(F.headers(1, F.requestBlock('users')));
  await raw.until(() => raw.answered.has(1), 3000);
  raw.destroy();
});

const port = (): number => suite.port;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `meshlet_http2_sessions_closed_total{listener,reason}`, 0 when absent. */
const closedForAbuse = (reason: string, listener = 'outbound'): Promise<number> =>
  metricValue(suite.mesh.admin, 'meshlet_http2_sessions_closed_total', { listener, reason });

/** The `http2 session closed for abuse` warnings for `reason` on `listener`, without `time` and `service`. */
function abuseLines(reason: string, listener = 'outbound'): Record<string, unknown>[] {
  return suite.mesh.logs
    .filter((l) => l['msg'] === 'http2 session closed for abuse' && l['reason'] === reason)
    .filter((l) => l['listener'] === listener)
    .map(({ time: _t, service: _s, ...rest }) => rest);
}

/** The one warning a close for `reason` on `listener` from this test's client writes. */
const abuseLine = (reason: string, listener = 'outbound') => ({
  level: 'warn',
  msg: 'http2 session closed for abuse',
  peer: expect.stringMatching(/^(::ffff:)?127\.0\.0\.1$/),
  reason,
  listener,
});

/** Writes `make()` frames in batches of 1,000 (at most `batches`) while the session lasts; bounded by 5 s. */
async function flood(raw: F.RawH2, make: () => Buffer, batches: number, drain = true): Promise<void> {
  const end = performance.now() + 5000;
  for (let b = 0; b < batches && !raw.socket.destroyed && performance.now() < end; b++) {
    raw.write(Buffer.concat(Array.from({ length: 1000 }, make)));
    if (drain) await raw.drained();
    else await Promise.race([raw.drained(), pause(100)]);
  }
}

describe('floods close the session, counted by listener and reason in meshlet_http2_sessions_closed_total and logged', () => {
  it('CONTINUATION frames without END_HEADERS: closed after a few, never buffered', async () => {
    const before = await closedForAbuse('continuation_flood');
    const raw = await F.RawH2.open(port());
    raw.write(F.headersUnfinished(1, F.requestBlock('users')));
    await flood(raw, () => F.continuation(1, F.literal('x-a', 'b'.repeat(100))), 50);
    expect(await raw.until(() => raw.socket.destroyed, 3000)).toBe(true);
    expect(raw.goaway).not.toBeNull();
    expect(await closedForAbuse('continuation_flood')).toBe(before + 1);
    expect(abuseLines('continuation_flood')).toEqual([abuseLine('continuation_flood')]);
    raw.destroy();
  }, 15_000);

  it('PINGs from a client that reads nothing: closed once acknowledgements pile up', async () => {
    const before = await closedForAbuse('flood');
    const raw = await F.RawH2.open(port());
    raw.socket.pause();
    await flood(raw, () => F.ping(), 300, false);
    raw.socket.resume();
    expect(await raw.until(() => raw.socket.destroyed, 3000)).toBe(true);
    expect(await closedForAbuse('flood')).toBe(before + 1);
    expect(abuseLines('flood')).toEqual([abuseLine('flood')]);
    raw.destroy();
  }, 15_000);

  it('empty DATA frames on an open stream: closed after 1,000 (invalid frames)', async () => {
    const before = await closedForAbuse('invalid_frames');
    const raw = await F.RawH2.open(port());
    raw.write(F.headers(1, F.requestBlock('users', '/', 'POST'), true));
    await flood(raw, () => F.data(1, Buffer.alloc(0)), 20);
    expect(await raw.until(() => raw.socket.destroyed, 3000)).toBe(true);
    expect(await closedForAbuse('invalid_frames')).toBe(before + 1);
    expect(abuseLines('invalid_frames')).toEqual([abuseLine('invalid_frames')]);
    raw.destroy();
  }, 15_000);

  it('the cleartext gateway counts and logs its own: empty DATA frames under listener="gateway"', async () => {
    const outboundBefore = await closedForAbuse('invalid_frames');
    const raw = await F.RawH2.open(suite.mesh.daemon.addresses().gateway!.port);
    raw.write(F.headers(1, F.requestBlock('users', '/', 'POST'), true));
    await flood(raw, () => F.data(1, Buffer.alloc(0)), 20);
    expect(await raw.until(() => raw.socket.destroyed, 3000)).toBe(true);
    expect(await closedForAbuse('invalid_frames', 'gateway')).toBe(1);
    expect(await closedForAbuse('invalid_frames')).toBe(outboundBefore);
    expect(abuseLines('invalid_frames', 'gateway')).toEqual([abuseLine('invalid_frames', 'gateway')]);
    raw.destroy();
  }, 15_000);
});

describe('bounded without a close', () => {
  it('an HPACK bomb (one 4 KB table entry referenced 16,000 times a block) resets each stream, quickly, forwarding none', async () => {
    const seen = suite.up.requests.length;
    const heap0 = process.memoryUsage().heapUsed;
    const raw = await F.RawH2.open(port());
    raw.write(
      F.headers(1, Buffer.concat([F.requestBlock('users'), F.indexedLiteral('x-bomb', 'b'.repeat(4000))])),
    );
    await raw.until(() => raw.answered.has(1), 3000);
    const t0 = performance.now();
    // Each block decodes to 64 MB of fields: node:http2 stops at SETTINGS_MAX_HEADER_LIST_SIZE.
    for (let id = 3; id < 3 + 2 * 200; id += 2) {
      raw.write(F.headers(id, Buffer.concat([F.requestBlock('users'), Buffer.alloc(16_000, 0x80 | 62)])));
      await raw.drained();
    }
    expect(await raw.until(() => raw.resets.size === 200, 5000)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(new Set(raw.resets.values())).toEqual(new Set([F.H2Error.ENHANCE_YOUR_CALM]));
    expect(suite.up.requests.length - seen).toBe(1);
    expect(process.memoryUsage().heapUsed - heap0).toBeLessThan(64 * 1048576);
    raw.destroy();
  }, 15_000);

  it('streams past SETTINGS_MAX_CONCURRENT_STREAMS (1,000) are refused with REFUSED_STREAM', async () => {
    const raw = await F.RawH2.open(port());
    const frames: Buffer[] = [];
    // Bodies never sent: each stream stays open until the client goes.
    for (let i = 0, id = 1; i < 1100; i++, id += 2)
      frames.push(F.headers(id, F.requestBlock('users', '/', 'POST'), true));
    raw.write(Buffer.concat(frames));
    expect(await raw.until(() => raw.resets.size >= 100, 5000)).toBe(true);
    expect(new Set(raw.resets.values())).toEqual(new Set([0x7]));
    expect([...raw.resets.keys()].every((id) => id > 2 * 1000)).toBe(true);
    raw.destroy();
  }, 15_000);

  it('a client that reads nothing stalls the endpoint: meshlet buffers a bounded amount, not the 64 MiB bodies', async () => {
    // Windows wide open, then the socket left unread: only TCP backpressure is left.
    const raw = await F.RawH2.open(port(), { initialSettings: [[0x4, 0x7fffffff]] });
    raw.write(F.windowUpdate(0, 0x7fffffff - 65_535));
    await pause(100);
    raw.socket.pause();
    bigWritten = 0;
    const mem0 = process.memoryUsage();
    for (let id = 1; id <= 9; id += 2) raw.write(F.headers(id, F.requestBlock('users', '/big')));
    await pause(1500);
    const stalled = bigWritten;
    await pause(1500);
    const mem = process.memoryUsage();
    // Stalled: kernel socket buffers and one window's worth per stream, not the bodies.
    expect(bigWritten).toBe(stalled);
    expect(bigWritten).toBeLessThan(5 * 16 * 1048576);
    expect(mem.heapUsed + mem.arrayBuffers - mem0.heapUsed - mem0.arrayBuffers).toBeLessThan(48 * 1048576);
    raw.destroy();
  }, 15_000);
});
