// The Consul double's tampering switch: off, answers are untouched; on, it mangles matching answers as told, blocked queries included.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { call } from '../consul-double/test-client.ts';

describe('ConsulDouble.setTampering', () => {
  let c: ConsulDouble;
  beforeAll(async () => {
    c = new ConsulDouble({ jitter: false });
    await c.start();
    c.addInstance({ service: 'web', id: 'web-1', port: 8080 });
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('leaves answers as Consul sends them while off', async () => {
    const r = await call(c, 'GET', '/v1/health/service/web');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(r.headers.get('x-consul-knownleader')).toBe('true');
    expect(r.index).toBe(c.index);
    expect(r.headers.get('content-length')).toBe(String(Buffer.byteLength(r.text)));
    expect(r.json<unknown[]>()).toHaveLength(1);
    expect(c.faults.tampering).toBe(false);
  });

  it('replaces the body, status, content type or index of matching answers, for `times` answers', async () => {
    c.setTampering({ path: '/v1/health/service/web', times: 2, body: 'null', index: 'abc' });
    const other = await call(c, 'GET', '/v1/catalog/services');
    expect(other.text).not.toBe('null');
    const a = await call(c, 'GET', '/v1/health/service/web');
    expect([a.status, a.text, a.headers.get('x-consul-index')]).toEqual([200, 'null', 'abc']);
    c.setTampering({ path: '/v1/health/service/web', times: 1, index: null, status: 503 });
    const b = await call(c, 'GET', '/v1/health/service/web');
    expect([b.status, b.headers.has('x-consul-index'), b.json<unknown[]>().length]).toEqual([503, false, 1]);
    expect((await call(c, 'GET', '/v1/health/service/web')).index).toBe(c.index);
  });

  it('generated bodies, chunked answers and resets mid-body', async () => {
    c.setTampering({ path: '/v1/health/service/web', times: 1, bodyBytes: 100_000, chunked: true });
    const big = await call(c, 'GET', '/v1/health/service/web');
    expect(big.headers.has('content-length')).toBe(false);
    expect(big.text.length).toBeGreaterThanOrEqual(100_000);
    expect(Array.isArray(big.json())).toBe(true);
    c.setTampering({ path: '/v1/health/service/web', times: 1, resetAfterBytes: 5 });
    const res = await request(`${c.url}/v1/health/service/web`);
    await expect(res.body.text()).rejects.toThrow();
    expect((await call(c, 'GET', '/v1/health/service/web')).status).toBe(200);
  });

  it('a query blocked before the switch is tampered with when it answers; the switch works over HTTP', async () => {
    const first = await call(c, 'GET', '/v1/health/service/web');
    const pending = call(c, 'GET', `/v1/health/service/web?index=${first.index}&wait=5s`);
    await c.waitFor((d) => d.blockedQueries >= 1, 2000, 'blocked');
    const put = await call(c, 'PUT', '/_double/tamper', {
      path: '/v1/health/service/',
      times: 1,
      body: '{}',
    });
    expect(put.json()).toMatchObject({ tampering: true });
    c.addInstance({ service: 'web', id: 'web-2', port: 8081 });
    expect((await pending).text).toBe('{}');
    expect((await call(c, 'PUT', '/_double/tamper', '[]')).status).toBe(400);
    await call(c, 'PUT', '/_double/tamper', { body: 'x' });
    expect((await call(c, 'DELETE', '/_double/tamper')).json()).toMatchObject({ tampering: false });
    expect((await call(c, 'GET', '/v1/health/service/web')).json<unknown[]>()).toHaveLength(2);
  });
});
