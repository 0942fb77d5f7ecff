// The gateway at the edge replaces an internet client's x-request-id (Envoy's preserve_external_request_id: false); behind a trusted proxy it keeps the proxy's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl } from './fixtures.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A gateway with `trustedProxies` in front of one upstream; every request's headers are kept. */
async function gateway(trustedProxies: number): Promise<{ m: InProcessMeshlet; gw: string }> {
  const m = await startMeshlet({
    listeners: { gateway: { address: '127.0.0.1', port: 0 } },
    registry: { endpoints: { web: [upstream.endpoint] } },
    gateway: { trustedProxies, routes: [{ match: { pathPrefix: '/' }, upstream: 'web' }] },
  });
  return { m, gw: gatewayUrl(m.daemon) };
}

let upstream: TestUpstream;
beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
});

describe('gateway: a client’s x-request-id', () => {
  it('with no trusted proxy (the default), a client’s id is replaced by a fresh UUID, upstream and in the echo alike', async () => {
    const { m, gw } = await gateway(0);
    try {
      const res = await call(gw, '/a', { 'x-request-id': 'chosen-by-the-internet' });
      expect(res.status).toBe(200);
      const seen = upstream.requests.at(-1)!.headers['x-request-id'];
      expect(seen).toMatch(UUID);
      expect(res.headers['x-request-id']).toBe(seen);
      // Without one, one is generated as before.
      await call(gw, '/b');
      expect(upstream.requests.at(-1)!.headers['x-request-id']).toMatch(UUID);
    } finally {
      await m.close();
    }
  });

  it('behind a trusted proxy, the proxy’s id is kept and echoed', async () => {
    const { m, gw } = await gateway(1);
    try {
      const res = await call(gw, '/a', { 'x-request-id': 'lb-7f3a' });
      expect(res.status).toBe(200);
      expect(upstream.requests.at(-1)!.headers['x-request-id']).toBe('lb-7f3a');
      expect(res.headers['x-request-id']).toBe('lb-7f3a');
    } finally {
      await m.close();
    }
  });
});
