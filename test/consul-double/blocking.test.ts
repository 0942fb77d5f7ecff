// Blocking queries on the double: wake on relevant change, time out on wait, index resets and restarts.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsulDouble } from './consul-double.ts';
import { call } from './test-client.ts';

let consul: ConsulDouble;

beforeEach(async () => {
  consul = new ConsulDouble({ jitter: false });
  await consul.start();
});

afterEach(async () => {
  await consul.stop();
});

describe('blocking queries', () => {
  it('blocks until the service changes and returns the new index', async () => {
    consul.addInstance({ service: 'web', id: 'w1', port: 1 });
    const first = await call(consul, 'GET', '/v1/health/service/web');
    expect(first.index).toBeGreaterThan(0);
    expect(first.headers.get('x-consul-knownleader')).toBe('true');
    expect(first.headers.get('x-consul-lastcontact')).toBe('0');

    const started = Date.now();
    const pending = call(consul, 'GET', `/v1/health/service/web?index=${first.index}&wait=5s`);
    await consul.waitFor((d) => d.blockedQueries === 1, 2_000, 'query blocked');
    consul.addInstance({ service: 'other', port: 2 }); // unrelated: must not wake it
    await new Promise((r) => setTimeout(r, 100));
    expect(consul.blockedQueries).toBe(1);
    consul.addInstance({ service: 'web', id: 'w2', port: 3 });
    const second = await pending;
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(second.index).toBeGreaterThan(first.index);
    expect(second.json<unknown[]>()).toHaveLength(2);
  });

  it('returns the same index when the wait elapses', async () => {
    consul.addInstance({ service: 'web', port: 1 });
    const first = await call(consul, 'GET', '/v1/catalog/service/web');
    const started = Date.now();
    const again = await call(consul, 'GET', `/v1/catalog/service/web?index=${first.index}&wait=300ms`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    expect(again.status).toBe(200);
    expect(again.index).toBe(first.index);
  });

  it('bumps the index on a TTL status change but not on an identical pass', async () => {
    await call(consul, 'PUT', '/v1/agent/service/register', { Name: 'web', Check: { TTL: '10s' } });
    await call(consul, 'PUT', '/v1/agent/check/pass/service:web');
    const a = await call(consul, 'GET', '/v1/health/service/web');
    await call(consul, 'PUT', '/v1/agent/check/pass/service:web');
    const b = await call(consul, 'GET', '/v1/health/service/web');
    expect(b.index).toBe(a.index);
    await call(consul, 'PUT', '/v1/agent/check/pass/service:web?note=changed');
    const c = await call(consul, 'GET', '/v1/health/service/web');
    expect(c.index).toBeGreaterThan(b.index);
    await call(consul, 'PUT', '/v1/agent/check/fail/service:web?note=changed');
    const d = await call(consul, 'GET', '/v1/health/service/web');
    expect(d.index).toBeGreaterThan(c.index);
  });

  it('wakes blocked queries with a lower index when the index is reset', async () => {
    for (let i = 0; i < 5; i++) consul.addInstance({ service: 'web', id: `w${i}`, port: i + 1 });
    const first = await call(consul, 'GET', '/v1/health/service/web');
    expect(first.index).toBeGreaterThan(3);
    const pending = call(consul, 'GET', `/v1/health/service/web?index=${first.index}&wait=5s`);
    await consul.waitFor((d) => d.blockedQueries === 1, 2_000, 'query blocked');
    consul.resetIndex(1);
    const woke = await pending;
    expect(woke.index).toBe(1);
    expect(woke.json<unknown[]>()).toHaveLength(5);
    consul.addInstance({ service: 'web', id: 'w9', port: 9 });
    const after = await call(consul, 'GET', '/v1/health/service/web?index=1&wait=2s');
    expect(after.index).toBe(2);
  });

  it('forgets everything on restart and wakes watchers', async () => {
    await call(consul, 'PUT', '/v1/agent/service/register', { Name: 'web', Port: 80 });
    await call(consul, 'PUT', '/v1/kv/cfg', 'x');
    const before = await call(consul, 'GET', '/v1/health/service/web');
    const pending = call(consul, 'GET', `/v1/health/service/web?index=${before.index}&wait=5s`);
    await consul.waitFor((d) => d.blockedQueries === 1, 2_000, 'query blocked');
    consul.restart();
    const woke = await pending;
    expect(woke.json()).toEqual([]);
    expect(woke.index).toBeLessThan(before.index);
    expect(woke.index).toBeGreaterThan(0);
    expect((await call(consul, 'GET', '/v1/agent/services')).json()).toEqual({});
    expect((await call(consul, 'GET', '/v1/kv/cfg')).status).toBe(404);
  });

  it('rejects malformed wait and index like Consul', async () => {
    const w = await call(consul, 'GET', '/v1/catalog/services?index=1&wait=10');
    expect([w.status, w.text]).toEqual([400, 'Invalid wait time']);
    const i = await call(consul, 'GET', '/v1/catalog/services?index=abc');
    expect([i.status, i.text]).toEqual([400, 'Invalid index']);
  });

  it('blocks a KV read until that key changes', async () => {
    await call(consul, 'PUT', '/v1/kv/a', '1');
    const first = await call(consul, 'GET', '/v1/kv/a');
    const pending = call(consul, 'GET', `/v1/kv/a?index=${first.index}&wait=5s`);
    await consul.waitFor((d) => d.blockedQueries === 1, 2_000, 'query blocked');
    await call(consul, 'PUT', '/v1/kv/b', 'unrelated');
    await new Promise((r) => setTimeout(r, 100));
    expect(consul.blockedQueries).toBe(1);
    await call(consul, 'PUT', '/v1/kv/a', '2');
    const second = await pending;
    expect(Buffer.from(second.json<Array<{ Value: string }>>()[0]!.Value, 'base64').toString()).toBe('2');
    expect(second.index).toBeGreaterThan(first.index);
  });
});
