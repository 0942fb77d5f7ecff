// The double's KV API, ACL tokens, and fault switches (down, failing, slow) over real sockets.
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ConsulDouble } from './consul-double.ts';
import { call } from './test-client.ts';

let consul: ConsulDouble | undefined;

async function started(d: ConsulDouble): Promise<ConsulDouble> {
  consul = d;
  await d.start();
  return d;
}

afterEach(async () => {
  await consul?.stop();
  consul = undefined;
});

describe('KV', () => {
  it('puts, gets (JSON, raw, recurse, keys) and deletes with Consul shapes', async () => {
    const c = await started(new ConsulDouble());
    expect((await call(c, 'PUT', '/v1/kv/app/config?flags=42', 'hello')).json()).toBe(true);
    await call(c, 'PUT', '/v1/kv/app/sub/x', 'x');
    const got = await call(c, 'GET', '/v1/kv/app/config');
    const [entry] = got.json<Array<Record<string, unknown>>>();
    expect(entry).toMatchObject({
      Key: 'app/config',
      Flags: 42,
      LockIndex: 0,
      Value: Buffer.from('hello').toString('base64'),
    });
    expect(entry!.CreateIndex).toBe(entry!.ModifyIndex);
    expect(got.index).toBeGreaterThan(0);

    const raw = await call(c, 'GET', '/v1/kv/app/config?raw');
    expect(raw.text).toBe('hello');
    const all = (await call(c, 'GET', '/v1/kv/app?recurse')).json<Array<{ Key: string }>>();
    expect(all.map((e) => e.Key)).toEqual(['app/config', 'app/sub/x']);
    expect((await call(c, 'GET', '/v1/kv/app/?keys&separator=/')).json()).toEqual(['app/config', 'app/sub/']);

    const missing = await call(c, 'GET', '/v1/kv/nope');
    expect(missing.status).toBe(404);
    expect(missing.index).toBeGreaterThan(0);

    expect((await call(c, 'DELETE', '/v1/kv/app?recurse')).json()).toBe(true);
    expect((await call(c, 'GET', '/v1/kv/app/config')).status).toBe(404);
  });

  it('honours check-and-set', async () => {
    const c = await started(new ConsulDouble());
    expect((await call(c, 'PUT', '/v1/kv/k?cas=0', 'a')).json()).toBe(true);
    expect((await call(c, 'PUT', '/v1/kv/k?cas=0', 'b')).json()).toBe(false);
    const idx = (await call(c, 'GET', '/v1/kv/k')).json<Array<{ ModifyIndex: number }>>()[0]!.ModifyIndex;
    expect((await call(c, 'PUT', `/v1/kv/k?cas=${idx + 100}`, 'c')).json()).toBe(false);
    expect((await call(c, 'PUT', `/v1/kv/k?cas=${idx}`, 'd')).json()).toBe(true);
    expect(c.kvGet('k')?.toString()).toBe('d');
  });
});

describe('ACL', () => {
  const acl = {
    defaultPolicy: 'deny' as const,
    tokens: { secret: 'write' as const, reader: 'read' as const },
  };

  it('denies writes without a token and records the tokens sent', async () => {
    const c = await started(new ConsulDouble({ acl }));
    const anon = await call(c, 'PUT', '/v1/agent/service/register', { Name: 'web' });
    expect(anon.status).toBe(403);
    expect(anon.text).toMatch(
      /^Permission denied: anonymous token lacks permission 'service:write' on "web"/,
    );

    const unknown = await call(
      c,
      'PUT',
      '/v1/agent/service/register',
      { Name: 'web' },
      { 'X-Consul-Token': 'bogus' },
    );
    expect([unknown.status, unknown.text]).toEqual([403, 'ACL not found']);

    const reader = await call(c, 'PUT', '/v1/kv/x', 'v', { Authorization: 'Bearer reader' });
    expect(reader.status).toBe(403);
    expect(reader.text).toMatch(
      /^Permission denied: token with AccessorID '.+' lacks permission 'key:write' on "x"$/,
    );

    const ok = await call(
      c,
      'PUT',
      '/v1/agent/service/register',
      { Name: 'web' },
      { 'X-Consul-Token': 'secret' },
    );
    expect(ok.status).toBe(200);
    expect((await call(c, 'GET', '/v1/kv/x?token=reader')).status).toBe(404);

    expect(c.seenTokens).toEqual(['bogus', 'reader', 'secret']);
    const last = c.requests.at(-1)!;
    expect(last.token).toBe('reader');
    expect(c.requests.find((r) => r.token === 'secret')!.headers['x-consul-token']).toBe('secret');
  });

  it('filters list reads for the anonymous token instead of failing them', async () => {
    const c = await started(new ConsulDouble({ acl }));
    c.addInstance({ service: 'web', port: 80 });
    const anon = await call(c, 'GET', '/v1/health/service/web');
    expect(anon.status).toBe(200);
    expect(anon.json()).toEqual([]);
    expect(anon.headers.get('x-consul-results-filtered-by-acls')).toBe('true');
    const withToken = await call(c, 'GET', '/v1/health/service/web', undefined, {
      'X-Consul-Token': 'reader',
    });
    expect(withToken.json<unknown[]>()).toHaveLength(1);
    const kvAnon = await call(c, 'GET', '/v1/kv/anything');
    expect(kvAnon.status).toBe(403);
  });
});

describe('fault switches', () => {
  it('refuses connections while down and comes back on the same port', async () => {
    const c = await started(new ConsulDouble());
    const port = c.port;
    await c.setDown(true);
    await expect(request(`${c.url}/v1/status/leader`)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await c.setDown(false);
    expect(c.port).toBe(port);
    expect((await call(c, 'GET', '/v1/status/leader')).status).toBe(200);
  });

  it('drops blocked queries when going down', async () => {
    const c = await started(new ConsulDouble());
    const first = await call(c, 'GET', '/v1/catalog/services');
    const pending = request(`${c.url}/v1/catalog/services?index=${first.index}&wait=10s`);
    await c.waitFor((d) => d.blockedQueries === 1, 2_000);
    await c.setDown(true, 200);
    await expect(pending).rejects.toThrow();
    await c.waitFor((d) => !d.down, 2_000, 'back up');
    expect((await call(c, 'GET', '/v1/catalog/services')).status).toBe(200);
  });

  it('answers 500s while failing, for a number of times or until cleared', async () => {
    const c = await started(new ConsulDouble());
    c.setFailing(500, { times: 2 });
    const a = await call(c, 'GET', '/v1/health/service/web');
    expect([a.status, a.text]).toEqual([500, 'No cluster leader']);
    expect((await call(c, 'GET', '/v1/health/service/web')).status).toBe(500);
    expect((await call(c, 'GET', '/v1/health/service/web')).status).toBe(200);
    c.setFailing(503);
    expect((await call(c, 'GET', '/v1/agent/services')).status).toBe(503);
    c.setFailing(null);
    expect((await call(c, 'GET', '/v1/agent/services')).status).toBe(200);
  });

  it('delays answers while slow', async () => {
    const c = await started(new ConsulDouble());
    c.setSlow(150);
    const t0 = Date.now();
    await call(c, 'GET', '/v1/status/leader');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    c.setSlow(0);
  });

  it('offers the switches over HTTP under /_double', async () => {
    const c = await started(new ConsulDouble());
    expect((await call(c, 'PUT', '/_double/fail?status=500&times=1')).status).toBe(200);
    expect((await call(c, 'GET', '/v1/agent/services')).status).toBe(500);
    expect((await call(c, 'GET', '/v1/agent/services')).status).toBe(200);
    const add = await call(c, 'PUT', '/_double/instances', { service: 'db', id: 'db-1', port: 5432 });
    expect(add.json()).toEqual({ id: 'db-1' });
    expect((await call(c, 'PUT', '/_double/check/service:db-1?status=critical')).status).toBe(200);
    expect((await call(c, 'GET', '/v1/health/service/db?passing')).json()).toEqual([]);
    await call(c, 'PUT', '/_double/reset-index?to=1');
    expect((await call(c, 'GET', '/v1/health/service/db')).index).toBe(1);
    await call(c, 'PUT', '/_double/restart');
    expect((await call(c, 'GET', '/v1/health/service/db')).json()).toEqual([]);
    const state = (await call(c, 'GET', '/_double/state')).json<Record<string, unknown>>();
    expect(state).toMatchObject({ down: false, slowMs: 0, failing: null });
  });
});
