// Registration: the fields Consul gets, the TTL check following the app's probe, re-registration, ACL token.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { adminGet, consulRegistry, metric, within } from './consul-helpers.ts';

const TOKEN = 'b3c1d2e4-acl-secret-token-0001';
const INTERVAL = 500;

/** The local app: `/health` answers 200 while `healthy`, 500 otherwise. */
function appHandler(state: { healthy: boolean }) {
  return startUpstream.bind(null, (req, res) => {
    req.resume();
    if (req.url === '/health') {
      res.writeHead(state.healthy ? 200 : 500, { 'content-type': 'text/plain' });
      res.end(state.healthy ? 'all good' : 'database down');
      return;
    }
    res.end('app');
  });
}

describe('Consul registration', () => {
  let double: ConsulDouble;
  let app: TestUpstream;
  const state = { healthy: true };
  let mesh: InProcessMeshlet;
  const id = 'web-test-1';
  const checkId = `service:${id}`;

  beforeAll(async () => {
    double = new ConsulDouble({ acl: { defaultPolicy: 'deny', tokens: { [TOKEN]: 'write' } } });
    await double.start();
    app = await appHandler(state)();
    mesh = await startMeshlet({
      service: {
        name: 'web',
        port: app.port,
        address: '127.0.0.1',
        tags: ['v1', 'blue'],
        meta: { version: '1.4.2' },
      },
      registry: consulRegistry(double, {
        consul: { token: TOKEN },
        serviceId: id,
        weights: { passing: 3, warning: 1 },
        check: { http: '/health', interval: INTERVAL, timeout: 200, deregisterCriticalServiceAfter: '90s' },
      }),
      shutdown: { drainDelay: 0 },
    });
    await double.waitFor(
      (d) => d.checks(id)[0]?.status === 'passing' && d.checks(id)[0]?.output !== '',
      3000,
      'registered, passing, with the probe output',
    );
  });
  afterAll(async () => {
    await mesh?.close();
    await double?.stop();
    await app?.close();
  });

  it('registers Name, ID, Address, Port, Tags, Meta, Weights and a TTL check with DeregisterCriticalServiceAfter', async () => {
    const [svc] = double.instances('web');
    expect(svc).toMatchObject({
      id,
      name: 'web',
      address: '127.0.0.1',
      port: app.port,
      tags: ['v1', 'blue'],
      weights: { Passing: 3, Warning: 1 },
    });
    expect(svc!.meta).toMatchObject({ version: '1.4.2', meshlet_inbound: 'plain' });
    expect(svc!.meta.meshlet_version).toMatch(/^\d+\.\d+\.\d+/);
    const [check] = double.checks(id);
    expect(check).toMatchObject({ checkId, type: 'ttl', status: 'passing' });
    expect(check!.definition.ttlMs).toBe(3 * INTERVAL);
    expect(check!.definition.deregisterCriticalServiceAfterMs).toBe(90_000);
    expect(check!.output).toMatch(/HTTP GET http:\/\/127\.0\.0\.1:\d+\/health: 200 Output: all good/);
    // The agent API says the same as the double's state, in Consul's field names.
    const res = await request(`${double.url}/v1/agent/service/${id}`, {
      headers: { 'x-consul-token': TOKEN },
    });
    const body = (await res.body.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ ID: id, Service: 'web', Weights: { Passing: 3, Warning: 1 } });
  });

  it('app failing → critical within 2 probe intervals with the probe output; healthy → passing again', async () => {
    state.healthy = false;
    const tookCritical = await within(
      2 * INTERVAL,
      () => double.checks(id)[0]?.status === 'critical',
      'critical',
    );
    expect(tookCritical).toBeLessThanOrEqual(2 * INTERVAL);
    expect(double.checks(id)[0]!.output).toMatch(/: 500 Output: database down/);
    // /ready follows the app check.
    const ready = await adminGet<{ checks: Record<string, { ok: boolean; detail: string }> }>(
      mesh.admin,
      '/ready',
    );
    expect(ready.status).toBe(503);
    expect(ready.body.checks.app?.ok).toBe(false);
    expect(ready.body.checks.app?.detail).toMatch(/critical: .*database down/);
    expect(await metric(mesh.admin, 'meshlet_app_check_status{status="critical"}')).toBe(1);
    state.healthy = true;
    await within(2 * INTERVAL, () => double.checks(id)[0]?.status === 'passing', 'passing again');
    expect((await adminGet(mesh.admin, '/ready')).status).toBe(200);
  });

  it('app stopped (port closed) → critical within 2 probe intervals; started again → passing', async () => {
    const port = app.port;
    await app.close();
    const took = await within(2 * INTERVAL, () => double.checks(id)[0]?.status === 'critical', 'critical');
    expect(took).toBeLessThanOrEqual(2 * INTERVAL);
    expect(double.checks(id)[0]!.output).toMatch(/ECONNREFUSED/);
    app = await startUpstream((req, res) => {
      req.resume();
      res.end('all good');
    }, port);
    await within(2 * INTERVAL, () => double.checks(id)[0]?.status === 'passing', 'passing after restart');
  });

  it('the agent forgets everything (restart) → registered again within one check interval', async () => {
    const before = await metric(mesh.admin, 'meshlet_registry_consul_registrations_total');
    double.restart();
    expect(double.instances('web')).toHaveLength(0);
    // One interval, plus the probe and the two calls of that tick.
    const took = await within(
      INTERVAL + 200,
      () => double.checks(id)[0]?.status === 'passing',
      're-registered',
    );
    expect(took).toBeLessThanOrEqual(INTERVAL + 200);
    expect(double.instances('web')[0]).toMatchObject({
      id,
      port: app.port,
      weights: { Passing: 3, Warning: 1 },
    });
    // The counter moves once the registration's second call (the check output) is done too.
    let registrations = before;
    for (let i = 0; i < 50 && registrations === before; i++) {
      registrations = await metric(mesh.admin, 'meshlet_registry_consul_registrations_total');
      if (registrations === before) await new Promise((r) => setTimeout(r, 20));
    }
    expect(registrations).toBe(before + 1);
  });

  it('manual deregistration → registered again within one check interval', async () => {
    await request(`${double.url}/v1/agent/service/deregister/${id}`, {
      method: 'PUT',
      headers: { 'x-consul-token': TOKEN },
    }).then((r) => r.body.dump());
    expect(double.instances('web')).toHaveLength(0);
    await within(INTERVAL + 200, () => double.instances('web').length === 1, 're-registered');
  });

  it('sends the ACL token on every call and never shows it in logs or admin output', async () => {
    expect(double.seenTokens).toEqual([TOKEN]);
    const consulCalls = double.requests.filter((r) => r.path.startsWith('/v1/'));
    expect(consulCalls.length).toBeGreaterThan(3);
    for (const r of consulCalls) {
      expect(r.headers['x-consul-token']).toBe(TOKEN);
      expect(r.query.get('token')).toBeNull();
    }
    const admin = await Promise.all(
      ['/ready', '/upstreams', '/metrics', '/live'].map(async (p) =>
        (await request(`${mesh.admin}${p}`)).body.text(),
      ),
    );
    for (const text of admin) expect(text).not.toContain(TOKEN);
    expect(JSON.stringify(mesh.logs)).not.toContain(TOKEN);
    const { body } = await adminGet<{ registry: { acl: string } }>(mesh.admin, '/upstreams');
    expect(body.registry.acl).toBe('token set');
  });
});
