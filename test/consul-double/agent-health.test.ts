// The double's agent and health API: registration round trip, TTL checks, ?passing, reaping.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsulDouble } from './consul-double.ts';
import { call } from './test-client.ts';

interface HealthEntry {
  Node: Record<string, unknown>;
  Service: Record<string, unknown>;
  Checks: Array<Record<string, unknown>>;
}

let consul: ConsulDouble;

beforeEach(async () => {
  consul = new ConsulDouble();
  await consul.start();
});

afterEach(async () => {
  await consul.stop();
});

describe('service registration', () => {
  it('round-trips every field with Consul casing and defaults', async () => {
    const reg = await call(consul, 'PUT', '/v1/agent/service/register', {
      Name: 'web',
      ID: 'web-1',
      Tags: ['v1', 'primary'],
      Address: '10.0.0.5',
      Port: 8080,
      Meta: { version: '1.2' },
      Weights: { Passing: 10, Warning: 2 },
      EnableTagOverride: true,
      Check: { TTL: '30s', Notes: 'app heartbeat', DeregisterCriticalServiceAfter: '1m30s' },
    });
    expect(reg.status).toBe(200);

    const services = (await call(consul, 'GET', '/v1/agent/services')).json<
      Record<string, Record<string, unknown>>
    >();
    expect(services['web-1']).toEqual({
      ID: 'web-1',
      Service: 'web',
      Tags: ['v1', 'primary'],
      Meta: { version: '1.2' },
      Port: 8080,
      Address: '10.0.0.5',
      Weights: { Passing: 10, Warning: 2 },
      EnableTagOverride: true,
      Datacenter: 'dc1',
    });
    expect('Kind' in services['web-1']!).toBe(false);

    const one = await call(consul, 'GET', '/v1/agent/service/web-1');
    expect(one.status).toBe(200);
    expect(one.json<Record<string, unknown>>().ContentHash).toBe(one.headers.get('x-consul-contenthash'));

    const checks = (await call(consul, 'GET', '/v1/agent/checks')).json<
      Record<string, Record<string, unknown>>
    >();
    expect(checks['service:web-1']).toMatchObject({
      Node: 'consul-double',
      CheckID: 'service:web-1',
      Name: "Service 'web' check",
      Status: 'critical',
      Notes: 'app heartbeat',
      Output: '',
      ServiceID: 'web-1',
      ServiceName: 'web',
      ServiceTags: ['v1', 'primary'],
      Type: 'ttl',
      Definition: { TTL: '30s', DeregisterCriticalServiceAfter: '1m30s' },
    });
  });

  it('defaults ID to Name, Weights to 1/1, and numbers multiple checks', async () => {
    await call(consul, 'PUT', '/v1/agent/service/register', {
      name: 'api',
      port: 9000,
      checks: [{ ttl: '10s' }, { TTL: '10s', status: 'passing' }],
      enable_tag_override: true,
    });
    const svc = (await call(consul, 'GET', '/v1/agent/service/api')).json<Record<string, unknown>>();
    expect(svc).toMatchObject({ ID: 'api', Service: 'api', Port: 9000, Weights: { Passing: 1, Warning: 1 } });
    expect(svc.EnableTagOverride).toBe(true);
    const checks = (await call(consul, 'GET', '/v1/agent/checks')).json<
      Record<string, Record<string, unknown>>
    >();
    expect(Object.keys(checks).sort()).toEqual(['service:api:1', 'service:api:2']);
    expect(checks['service:api:2']!.Status).toBe('passing');
  });

  it('answers Consul errors for bad registrations and unknown IDs', async () => {
    const noName = await call(consul, 'PUT', '/v1/agent/service/register', { Port: 1 });
    expect([noName.status, noName.text]).toEqual([400, 'Missing service name']);
    const badCheck = await call(consul, 'PUT', '/v1/agent/service/register', {
      Name: 'x',
      Check: { HTTP: 'http://a' },
    });
    expect(badCheck.status).toBe(400);
    expect(badCheck.text).toMatch(/^Invalid check: Interval must be > 0/);
    const get = await call(consul, 'GET', '/v1/agent/service/missing');
    expect([get.status, get.text]).toEqual([404, 'unknown service ID: missing']);
    const dereg = await call(consul, 'PUT', '/v1/agent/service/deregister/missing');
    expect(dereg.status).toBe(404);
    expect(dereg.text).toBe(
      'Unknown service ID "missing". Ensure that the service ID is passed, not the service name.',
    );
    const pass = await call(consul, 'PUT', '/v1/agent/check/pass/missing');
    expect(pass.status).toBe(404);
    expect(pass.text).toBe(
      'Unknown check ID "missing". Ensure that the check ID is passed, not the check name.',
    );
    const wrongMethod = await call(consul, 'GET', '/v1/agent/service/register');
    expect(wrongMethod.status).toBe(405);
  });

  it('deregisters a service with its checks', async () => {
    await call(consul, 'PUT', '/v1/agent/service/register', { Name: 'web', Check: { TTL: '10s' } });
    expect((await call(consul, 'PUT', '/v1/agent/service/deregister/web')).status).toBe(200);
    expect((await call(consul, 'GET', '/v1/agent/services')).json()).toEqual({});
    expect((await call(consul, 'GET', '/v1/agent/checks')).json()).toEqual({});
    expect((await call(consul, 'GET', '/v1/health/service/web')).json()).toEqual([]);
  });

  it('keeps check status on re-registration and honours replace-existing-checks', async () => {
    await call(consul, 'PUT', '/v1/agent/service/register', {
      Name: 'web',
      Checks: [
        { CheckID: 'a', TTL: '10s' },
        { CheckID: 'b', TTL: '10s' },
      ],
    });
    await call(consul, 'PUT', '/v1/agent/check/pass/a');
    await call(consul, 'PUT', '/v1/agent/service/register?replace-existing-checks=true', {
      Name: 'web',
      Checks: [{ CheckID: 'a', TTL: '10s' }],
    });
    const checks = (await call(consul, 'GET', '/v1/agent/checks')).json<
      Record<string, Record<string, unknown>>
    >();
    expect(Object.keys(checks)).toEqual(['a']);
    expect(checks.a!.Status).toBe('passing');
  });
});

describe('checks and health', () => {
  it('updates TTL checks with pass/warn/fail/update and notes', async () => {
    await call(consul, 'PUT', '/v1/agent/service/register', { Name: 'web', Check: { TTL: '10s' } });
    await call(consul, 'PUT', '/v1/agent/check/warn/service:web?note=slow');
    let c = (await call(consul, 'GET', '/v1/agent/checks')).json<Record<string, Record<string, unknown>>>();
    expect(c['service:web']).toMatchObject({ Status: 'warning', Output: 'slow' });
    const upd = await call(consul, 'PUT', '/v1/agent/check/update/service:web', {
      Status: 'passing',
      Output: 'ok',
    });
    expect(upd.status).toBe(200);
    c = (await call(consul, 'GET', '/v1/agent/checks')).json();
    expect(c['service:web']).toMatchObject({ Status: 'passing', Output: 'ok' });
    const bad = await call(consul, 'PUT', '/v1/agent/check/update/service:web', { Status: 'bogus' });
    expect([bad.status, bad.text]).toEqual([400, "Invalid check status: 'bogus'"]);
  });

  it('expires a TTL check to critical with "TTL expired" and ?passing drops it', async () => {
    await call(consul, 'PUT', '/v1/agent/service/register', {
      Name: 'web',
      Port: 80,
      Check: { TTL: '200ms', Status: 'passing' },
    });
    let passing = (await call(consul, 'GET', '/v1/health/service/web?passing')).json<HealthEntry[]>();
    expect(passing).toHaveLength(1);
    await consul.waitFor((d) => d.checks('web')[0]?.status === 'critical', 2_000);
    const all = (await call(consul, 'GET', '/v1/health/service/web')).json<HealthEntry[]>();
    const own = all[0]!.Checks.find((x) => x.CheckID === 'service:web');
    expect(own).toMatchObject({ Status: 'critical', Output: 'TTL expired' });
    expect(all[0]!.Checks.some((x) => x.CheckID === 'serfHealth' && x.Status === 'passing')).toBe(true);
    passing = (await call(consul, 'GET', '/v1/health/service/web?passing=true')).json();
    expect(passing).toEqual([]);
  });

  it('keeps the last output in the TTL-expired message', async () => {
    await call(consul, 'PUT', '/v1/agent/service/register', { Name: 'web', Check: { TTL: '150ms' } });
    await call(consul, 'PUT', '/v1/agent/check/pass/service:web?note=all%20good');
    await consul.waitFor((d) => d.checks('web')[0]?.status === 'critical', 2_000);
    expect(consul.checks('web')[0]!.output).toBe(
      'TTL expired (last output before timeout follows): all good',
    );
  });

  it('drops warning instances and instances on unhealthy nodes under ?passing', async () => {
    consul.addInstance({ service: 'db', id: 'db-1', address: '10.0.0.1', port: 5432 });
    consul.addInstance({ service: 'db', id: 'db-2', address: '10.0.0.2', port: 5432, status: 'warning' });
    consul.addInstance({ service: 'db', id: 'db-3', address: '10.0.0.3', port: 5432 });
    consul.setNodeHealth('critical', 'node-10-0-0-3');
    const all = (await call(consul, 'GET', '/v1/health/service/db')).json<HealthEntry[]>();
    expect(all.map((e) => e.Service.ID)).toEqual(['db-1', 'db-2', 'db-3']);
    expect(all[1]!.Node).toMatchObject({ Node: 'node-10-0-0-2', Address: '10.0.0.2', Datacenter: 'dc1' });
    const passing = (await call(consul, 'GET', '/v1/health/service/db?passing')).json<HealthEntry[]>();
    expect(passing.map((e) => e.Service.ID)).toEqual(['db-1']);
  });

  it('filters by every ?tag given', async () => {
    consul.addInstance({ service: 'db', id: 'a', port: 1, tags: ['primary', 'v1'] });
    consul.addInstance({ service: 'db', id: 'b', port: 2, tags: ['v1'] });
    const both = (await call(consul, 'GET', '/v1/health/service/db?tag=v1&tag=primary')).json<
      HealthEntry[]
    >();
    expect(both.map((e) => e.Service.ID)).toEqual(['a']);
    const cat = (await call(consul, 'GET', '/v1/catalog/service/db?tag=v1')).json<
      Array<Record<string, unknown>>
    >();
    expect(cat.map((e) => e.ServiceID)).toEqual(['a', 'b']);
    expect(cat[0]).toMatchObject({
      ServiceName: 'db',
      ServicePort: 1,
      ServiceWeights: { Passing: 1, Warning: 1 },
    });
  });

  it('reaps a service whose check stays critical past DeregisterCriticalServiceAfter', async () => {
    await call(consul, 'PUT', '/v1/agent/service/register', {
      Name: 'web',
      Check: { TTL: '100ms', Status: 'passing', DeregisterCriticalServiceAfter: '150ms' },
    });
    await consul.waitFor((d) => d.instances('web').length === 0, 3_000, 'service reaped');
    expect((await call(consul, 'GET', '/v1/agent/services')).json()).toEqual({});
  });

  it('lists catalog services, nodes, checks in state, leader and self', async () => {
    consul.addInstance({ service: 'db', port: 1, tags: ['x'] });
    expect((await call(consul, 'GET', '/v1/catalog/services')).json()).toEqual({ consul: [], db: ['x'] });
    const nodes = (await call(consul, 'GET', '/v1/catalog/nodes')).json<Array<Record<string, unknown>>>();
    expect(nodes.map((n) => n.Node)).toEqual(['consul-double', 'node-127-0-0-1']);
    const crit = await call(consul, 'GET', '/v1/health/state/critical');
    expect(crit.json()).toEqual([]);
    expect(crit.index).toBeGreaterThan(0);
    expect((await call(consul, 'GET', '/v1/status/leader')).json()).toBe('127.0.0.1:8300');
    const self = (await call(consul, 'GET', '/v1/agent/self')).json<{ Config: Record<string, unknown> }>();
    expect(self.Config).toMatchObject({ Datacenter: 'dc1', NodeName: 'consul-double' });
    const otherDc = await call(consul, 'GET', '/v1/health/service/db?dc=dc9');
    expect([otherDc.status, otherDc.text]).toEqual([500, 'No path to datacenter']);
  });
});

describe('HTTP and TCP checks', () => {
  it('runs HTTP checks (2xx passing, 429 warning, else critical) and TCP checks', async () => {
    let code = 200;
    const app = http.createServer((_req, res) => {
      res.writeHead(code);
      res.end('fine');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const port = (app.address() as AddressInfo).port;
    const fast = new ConsulDouble({ minCheckIntervalMs: 20 });
    await fast.start();
    try {
      await call(fast, 'PUT', '/v1/agent/service/register', {
        Name: 'app',
        Port: port,
        Checks: [
          { CheckID: 'http', HTTP: `http://127.0.0.1:${port}/health`, Interval: '50ms', Timeout: '1s' },
          { CheckID: 'tcp', TCP: `127.0.0.1:${port}`, Interval: '50ms' },
        ],
      });
      await fast.waitFor((d) => d.checks('app').every((c) => c.status === 'passing'), 3_000, 'checks pass');
      const http1 = fast.checks('app').find((c) => c.checkId === 'http')!;
      expect(http1.output).toBe(`HTTP GET http://127.0.0.1:${port}/health: 200 OK Output: fine`);
      expect(fast.checks('app').find((c) => c.checkId === 'tcp')!.output).toBe(
        `TCP connect 127.0.0.1:${port}: Success`,
      );
      code = 429;
      await fast.waitFor(
        (d) => d.checks('app').find((c) => c.checkId === 'http')?.status === 'warning',
        3_000,
      );
      code = 503;
      await fast.waitFor(
        (d) => d.checks('app').find((c) => c.checkId === 'http')?.status === 'critical',
        3_000,
      );
      const checks = (await call(fast, 'GET', '/v1/agent/checks')).json<
        Record<string, Record<string, unknown>>
      >();
      expect(checks.http).toMatchObject({ Type: 'http', Interval: '50ms', Timeout: '1s' });
    } finally {
      await fast.stop();
      await new Promise((r) => app.close(r));
    }
  });
});
