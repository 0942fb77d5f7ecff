// `meshlet breakers` and `meshlet breakers reset NAME` against a running meshlet's admin API.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, runCli, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('meshlet breakers', () => {
  let app: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    app = await startUpstream((req, res) => {
      req.resume();
      res.statusCode = 500;
      res.end();
    });
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { orders: [app.endpoint], users: [app.endpoint] } },
      upstreams: {
        orders: { retries: { attempts: 1 }, circuitBreaker: { volumeThreshold: 3, resetTimeout: '1m' } },
        users: { circuitBreaker: { enabled: false } },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await app.close();
  });

  it('lists breaker states, exits 1 while one is open, and reset closes it', async () => {
    const closed = await runCli(['breakers', '--admin', mesh.admin, '--json']);
    expect(closed.code).toBe(0);
    expect(JSON.parse(closed.stdout)).toEqual({
      breakers: [
        { name: 'orders', state: 'closed' },
        { name: 'users', state: 'disabled' },
      ],
    });
    for (let i = 0; i < 5; i++)
      await (await request(`${mesh.outbound}/`, { headers: { host: 'orders' } })).body.dump();
    const open = await runCli(['breakers', '--admin', mesh.admin]);
    expect(open.code).toBe(1);
    expect(open.stdout).toMatch(/^orders\s+open$/m);

    const reset = await runCli(['breakers', 'reset', 'orders', '--admin', mesh.admin]);
    expect(reset.code).toBe(0);
    expect(reset.stdout.trim()).toBe('orders: circuit breaker closed');
    expect((await runCli(['breakers', '--admin', mesh.admin])).code).toBe(0);

    const unknown = await runCli(['breakers', 'reset', 'nope', '--admin', mesh.admin]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no upstream nope/);
  });

  it('an unreachable admin API → exit 1 with the reason', async () => {
    const res = await runCli(['breakers', '--admin', 'http://127.0.0.1:1']);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/cannot read http:\/\/127\.0\.0\.1:1\/upstreams: ECONNREFUSED/);
  });

  it('with listeners.admin.token set, reset needs the token', async () => {
    const guarded = await startMeshlet({
      listeners: { admin: { port: 0, token: 's3cret-admin-token' } },
      registry: { type: 'static', endpoints: { orders: [app.endpoint] } },
      accessLog: { enabled: false },
    });
    try {
      const denied = await runCli(['breakers', 'reset', 'orders', '--admin', guarded.admin]);
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/mutating admin calls need the admin token/);
      const allowed = await runCli([
        'breakers',
        'reset',
        'orders',
        '--admin',
        guarded.admin,
        '--token',
        's3cret-admin-token',
      ]);
      expect(allowed.code).toBe(0);
    } finally {
      await guarded.close();
    }
  });
});
