// retryOn 408: an endpoint's 408 Request Timeout is retried when listed (RFC 9110 §15.5.9), under the safe-retry rules; unlisted, it goes to the caller.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

let upstream: TestUpstream;
/** Requests seen per path: the first of each path gets 408, the rest 200. */
const seen = new Map<string, number>();
let m: InProcessMeshlet;

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    req.resume();
    const n = (seen.get(req.url ?? '') ?? 0) + 1;
    seen.set(req.url ?? '', n);
    if (n === 1) {
      res.writeHead(408, { connection: 'close', 'content-type': 'text/plain' });
      res.end('timed out');
    } else res.end('ok');
  });
  m = await startMeshlet({
    registry: { endpoints: { listed: [upstream.endpoint], unlisted: [upstream.endpoint] } },
    upstreams: {
      listed: { retries: { attempts: 3, retryOn: [408], backoff: { base: '1ms', max: '1ms' } } },
      unlisted: { retries: { attempts: 3, retryOn: ['gateway-error'] } },
    },
  });
}, 20_000);

afterAll(async () => {
  await m?.close();
  await upstream?.close();
});

async function call(host: string, path: string, method: 'GET' | 'POST' = 'GET') {
  const res = await request(`${m.outbound}${path}`, {
    method,
    headers: { host },
    body: method === 'POST' ? 'x' : null,
  });
  return { status: res.statusCode, attempts: res.headers['x-meshlet-attempts'], body: await res.body.text() };
}

describe('retryOn: [408]', () => {
  it('a GET answered 408 is retried and gets the second answer', async () => {
    // Before the fix: 408 after one attempt (only statuses from 409 up were ever retried).
    expect(await call('listed', '/get')).toEqual({ status: 200, attempts: '2', body: 'ok' });
    expect(seen.get('/get')).toBe(2);
  });

  it('a POST (not idempotent, no idempotency-key) is not retried', async () => {
    expect(await call('listed', '/post', 'POST')).toEqual({ status: 408, attempts: '1', body: 'timed out' });
    expect(seen.get('/post')).toBe(1);
  });

  it('without 408 in retryOn the 408 goes to the caller', async () => {
    expect(await call('unlisted', '/unlisted')).toEqual({ status: 408, attempts: '1', body: 'timed out' });
    expect(seen.get('/unlisted')).toBe(1);
  });
});
