// The admin listener: /live, /ready, /upstreams, and /metrics counting a request just made.

import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('admin listener', () => {
  let app: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    app = await startUpstream();
    mesh = await startMeshlet({ registry: { type: 'static', endpoints: { users: [app.endpoint] } } });
  });
  afterAll(async () => {
    await mesh.close();
    await app.close();
  });

  it('/live and /ready answer 200 once the registry synced', async () => {
    expect((await request(`${mesh.admin}/live`)).statusCode).toBe(200);
    const ready = await request(`${mesh.admin}/ready`);
    expect(ready.statusCode).toBe(200);
    expect(await ready.body.json()).toMatchObject({ status: 'ready', checks: { registry: { ok: true } } });
  });

  it('/upstreams lists each upstream with its endpoints and their state', async () => {
    const body = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
      upstreams: Record<
        string,
        { total: number; healthy: number; endpoints: { id: string; state: string }[] }
      >;
    };
    expect(body.upstreams.users).toMatchObject({ total: 1, healthy: 1, loadBalancer: 'round_robin' });
    expect(body.upstreams.users?.endpoints[0]).toMatchObject({ id: app.endpoint, state: 'healthy' });
  });

  it('/metrics shows the request counter of a request just made, with its labels', async () => {
    const res = await request(`${mesh.outbound}/x`, { headers: { host: 'users' } });
    await res.body.dump();
    const text = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(text).toMatch(
      /^meshlet_requests_total\{direction="outbound",upstream="users",status_class="2xx"\} 1$/m,
    );
    expect(text).toMatch(
      /^meshlet_request_duration_seconds_count\{direction="outbound",upstream="users",status_class="2xx"\} 1$/m,
    );
    expect(text).toMatch(/^meshlet_upstream_endpoints\{upstream="users",state="healthy"\} 1$/m);
    expect(text).toMatch(/^meshlet_requests_active\{direction="outbound",upstream="users"\} 0$/m);
  });

  it('the access log has one line per request with id, upstream, endpoint, status, attempts, duration', async () => {
    const res = await request(`${mesh.outbound}/logged`, {
      headers: { host: 'users', 'x-request-id': 'log-me' },
    });
    await res.body.dump();
    const line = mesh.logs.find((l) => l.msg === 'access' && l.requestId === 'log-me');
    expect(line).toMatchObject({
      upstream: 'users',
      endpoint: app.endpoint,
      status: 200,
      attempts: 1,
      method: 'GET',
    });
    expect(typeof line?.durationMs).toBe('number');
  });

  it('a request meshlet refuses before any upstream (no route) gets an access line too', async () => {
    const before = mesh.logs.length;
    const res = await request(`${mesh.outbound}/`, { headers: { host: 'nobody-here' } });
    await res.body.dump();
    expect(res.statusCode).toBe(404);
    const lines = mesh.logs.slice(before).filter((l) => l.msg === 'access');
    expect(lines).toEqual([
      expect.objectContaining({ direction: 'outbound', method: 'GET', status: 404, error: 'no_route' }),
    ]);
  });

  it('unknown admin paths → 404, wrong methods → 405', async () => {
    expect((await request(`${mesh.admin}/nope`)).statusCode).toBe(404);
    expect((await request(`${mesh.admin}/live`, { method: 'POST' })).statusCode).toBe(405);
  });
});
