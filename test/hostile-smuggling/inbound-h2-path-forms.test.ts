// Inbound listener over HTTP/2: a `:path` that is not origin form (absolute form, a bare word, `*` off OPTIONS) never reaches the app: node:http2 resets the stream (RFC 9113 §8.3.1), the session serves on.
import { describe, expect, it } from 'vitest';
import { h2Exchange } from '../helpers/h2-request.ts';
import * as F from '../hostile-h2/h2-frames.ts';
import { exchange, listeners, smugglingMesh } from './smuggling-mesh.ts';

/** `[method, :path]` pairs RFC 9113 §8.3.1 makes malformed for an `https` request. */
const malformed: [string, string][] = [
  ['GET', 'http://evil/p'],
  ['GET', 'http://orders/p'],
  ['GET', 'https://a@orders/p'],
  ['GET', 'evil'],
  ['GET', '*'],
  ['POST', '*'],
  ['GET', ''],
];

describe('inbound listener: HTTP/2 `:path` forms', () => {
  const mesh = smugglingMesh();

  it.each(malformed.map(([method, path]) => ({ method, path })))(
    '$method "$path": the stream is reset (PROTOCOL_ERROR), nothing reaches the app, the next stream is served',
    async ({ method, path }) => {
      const before = mesh.rec.requests().length;
      const raw = await F.RawH2.open(mesh.inboundPort, { tls: mesh.tls });
      try {
        raw.write(F.headers(1, F.requestBlock('orders', path, method)));
        expect(await raw.until(() => raw.resets.has(1) || raw.answered.has(1), 3000)).toBe(true);
        expect({ reset: raw.resets.get(1), answered: raw.answered.has(1) }).toEqual({
          reset: F.H2Error.PROTOCOL_ERROR,
          answered: false,
        });
        raw.write(F.headers(3, F.requestBlock('orders', '/after')));
        expect(await raw.until(() => raw.answered.has(3), 3000)).toBe(true);
        expect(
          mesh.rec
            .requests()
            .slice(before)
            .map((r) => r.line),
        ).toEqual(['GET /after HTTP/1.1']);
      } finally {
        raw.destroy();
      }
    },
  );

  it('OPTIONS "*" gets the answer HTTP/1.1 gets (400 bad_request), and nothing reaches the app', async () => {
    const inbound = listeners(mesh).find((l) => l.name === 'inbound')!;
    const h1 = await exchange(mesh, inbound, 'OPTIONS * HTTP/1.1\r\nHost: orders\r\n\r\n');
    expect(h1.statuses).toEqual([400]);
    expect(h1.reply).toContain('x-meshlet-error: bad_request');
    expect(h1.reached).toEqual([]);
    const before = mesh.rec.requests().length;
    const h2 = await h2Exchange(
      `https://127.0.0.1:${mesh.inboundPort}`,
      { ':method': 'OPTIONS', ':path': '*', ':authority': 'orders' },
      mesh.tls,
      3000,
    );
    expect({ status: h2.head[':status'], error: h2.head['x-meshlet-error'] }).toEqual({
      status: 400,
      error: 'bad_request',
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(mesh.rec.requests().slice(before)).toEqual([]);
  });
});
