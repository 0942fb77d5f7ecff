// The double's agent restart with its data directory, as Consul's persistCheckState/loadChecks/loadCheckState do: TTL check state restored until its expiry, a full TTL from the restart, the catalog kept.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsulDouble } from './consul-double.ts';
import { call } from './test-client.ts';

let consul: ConsulDouble;

beforeEach(async () => {
  consul = new ConsulDouble();
  await consul.start();
});

afterEach(async () => {
  await consul.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Registers `id` with a TTL check `service:<id>` of `ttl` (registered passing). */
async function register(id: string, ttl: string): Promise<void> {
  const res = await call(consul, 'PUT', '/v1/agent/service/register', {
    ID: id,
    Name: 'web',
    Address: '10.0.0.5',
    Port: 8080,
    Check: { CheckID: `service:${id}`, Name: 'ttl', TTL: ttl, Status: 'passing' },
  });
  expect(res.status).toBe(200);
}

/**
 * The check `service:<id>` as `GET /v1/agent/checks` shows it. Asked twice at most: a pooled
 * connection the restart closed fails once ("other side closed"), as with a real agent.
 */
async function agentCheck(id: string): Promise<{ Status: string; Output: string } | undefined> {
  const get = () => call(consul, 'GET', '/v1/agent/checks');
  const checks = (await get().catch(get)).json<Record<string, { Status: string; Output: string }>>();
  return checks[`service:${id}`];
}

describe('restartWithState (an agent restarted with its -data-dir)', () => {
  it('a TTL check updated less than its TTL minus 1 s before comes back with that status and output, and runs a full TTL from the restart', async () => {
    await register('web-1', '3s');
    const update = { Status: 'warning', Output: 'slow' };
    expect((await call(consul, 'PUT', '/v1/agent/check/update/service:web-1', update)).status).toBe(200);
    const updated = performance.now();
    const index = consul.index;
    await sleep(300);
    await consul.restartWithState(700);
    const back = performance.now();
    // Its state expires 3 s after the update, in whole seconds: still ahead at a restart within 2 s.
    expect(back - updated).toBeLessThan(2000);
    expect(await agentCheck('web-1')).toMatchObject({ Status: 'warning', Output: 'slow' });
    expect(consul.index).toBeGreaterThanOrEqual(index);
    // Past the TTL of the update, not of the restart: still as restored.
    await sleep(Math.max(0, updated + 3000 + 200 - performance.now()));
    expect(await agentCheck('web-1')).toMatchObject({ Status: 'warning' });
    await consul.waitFor(() => consul.checks('web-1')[0]?.status === 'critical', 2000, 'TTL expired');
    expect(performance.now() - back).toBeGreaterThanOrEqual(3000 - 20);
    // The last output is not kept across the restart (CheckTTL.lastOutput starts empty).
    expect(await agentCheck('web-1')).toMatchObject({ Status: 'critical', Output: 'TTL expired' });
  });

  it('a TTL check whose persisted state expired while the agent was down comes back critical with no output, "TTL expired" one TTL later', async () => {
    await register('web-1', '1s');
    expect((await call(consul, 'PUT', '/v1/agent/check/pass/service:web-1?note=fine')).status).toBe(200);
    const updated = performance.now();
    await consul.restartWithState(1100);
    expect(performance.now() - updated).toBeGreaterThan(1000);
    expect(await agentCheck('web-1')).toMatchObject({ Status: 'critical', Output: '' });
    await consul.waitFor(
      () => consul.checks('web-1')[0]?.output === 'TTL expired',
      2000,
      'TTL expired one TTL after the restart',
    );
  });

  it('a TTL check never updated since its registration comes back critical (only an update persists state)', async () => {
    await register('web-1', '30s');
    expect(await agentCheck('web-1')).toMatchObject({ Status: 'passing' });
    await consul.restartWithState();
    expect(await agentCheck('web-1')).toMatchObject({ Status: 'critical', Output: '' });
  });

  it('keeps the catalog, KV and peers; refuses connections while down; a deregistered check leaves no state behind', async () => {
    await register('web-1', '30s');
    await register('web-2', '30s');
    await call(consul, 'PUT', '/v1/agent/check/pass/service:web-2');
    consul.addInstance({ service: 'users', id: 'users-a', address: '10.0.0.9', port: 9000 });
    consul.kvPut('config/a', 'x');
    expect((await call(consul, 'PUT', '/v1/agent/service/deregister/web-2')).status).toBe(200);
    await register('web-2', '30s');
    const restarting = consul.restartWithState(300);
    await sleep(100);
    await expect(fetch(`${consul.url}/v1/agent/services`)).rejects.toThrow();
    await restarting;
    const services = (await call(consul, 'GET', '/v1/agent/services')).json<Record<string, unknown>>();
    expect(Object.keys(services).sort()).toEqual(['web-1', 'web-2']);
    // web-2's earlier pass was purged with its deregistration: registered again, never updated, critical.
    expect(await agentCheck('web-2')).toMatchObject({ Status: 'critical' });
    expect(consul.instances('users').map((s) => s.id)).toEqual(['users-a']);
    expect(consul.checks('users-a')[0]?.status).toBe('passing');
    expect(consul.kvGet('config/a')?.toString()).toBe('x');
  });

  it('PUT /_double/restart?keep-state=true&down-ms=N answers, then restarts', async () => {
    await register('web-1', '30s');
    await call(consul, 'PUT', '/v1/agent/check/pass/service:web-1');
    const res = await call(consul, 'PUT', '/_double/restart?keep-state=true&down-ms=200');
    expect(res.json()).toEqual({ restarting: true, keepState: true, downMs: 200 });
    await consul.waitFor(() => consul.down, 1000, 'down');
    await consul.waitFor(() => !consul.down, 2000, 'back up');
    expect(await agentCheck('web-1')).toMatchObject({ Status: 'passing' });
  });
});
