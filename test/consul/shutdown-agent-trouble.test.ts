// Shutdown with a slow or stuck Consul agent: marking critical and deregistering are bounded, logged, and not held up by a check tick in flight.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { consulRegistry, within } from './consul-helpers.ts';

const ID = 'web-shutdown';

describe('shutdown while the Consul agent is in trouble', () => {
  let double: ConsulDouble;
  let app: TestUpstream;
  let mesh: InProcessMeshlet | undefined;

  beforeEach(async () => {
    double = new ConsulDouble();
    await double.start();
    app = await startUpstream();
  });
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
    await double.stop();
    await app.close();
  });

  const start = async (): Promise<InProcessMeshlet> => {
    mesh = await startMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: consulRegistry(double, { serviceId: ID, check: { interval: 100, timeout: 50 } }),
      shutdown: { drainDelay: 0, drainTimeout: 1000 },
      accessLog: { enabled: false },
    });
    return mesh;
  };
  const deregistrations = (): number =>
    double.requests.filter((r) => r.path === `/v1/agent/service/deregister/${ID}`).length;

  it('a check update stuck on a slow agent does not hold the shutdown: the drain marks and deregisters at once', async () => {
    const m = await start();
    await double.waitFor((d) => d.checks(ID)[0]?.status === 'passing', 3000, 'registered');
    // Past the one read that confirms the registration (the tick after it), so that the next
    // tick's call is a check update: two updates seen.
    await within(
      2000,
      () => double.requests.filter((r) => r.path.startsWith('/v1/agent/check/update/')).length >= 2,
      'two check updates',
    );
    // The next tick's call hangs (the double holds requests that arrive while slow) ...
    const sent = double.requests.length;
    double.setSlow(30_000);
    await within(
      2000,
      () => double.requests.slice(sent).some((r) => r.path.startsWith('/v1/agent/check/update/')),
      'a check update in flight',
    );
    // ... and the agent is well again by the time meshlet is told to stop.
    double.setSlow(0);
    const t0 = performance.now();
    await m.close();
    const took = performance.now() - t0;
    expect(took).toBeLessThan(1500);
    expect(double.instances('web')).toEqual([]);
    expect(m.logs.some((l) => l.msg === 'deregistered from Consul' && l.serviceId === ID)).toBe(true);
  });

  it('an agent that stays slow: marking critical and deregistering are bounded to 2 s each and logged', async () => {
    const m = await start();
    await double.waitFor((d) => d.checks(ID)[0]?.status === 'passing', 3000, 'registered');
    double.setSlow(30_000);
    await new Promise((r) => setTimeout(r, 150)); // a tick's calls are stuck now
    const t0 = performance.now();
    await m.close();
    const took = performance.now() - t0;
    // 2 s for the mark, 2 s for the deregistration, the drain itself is immediate (no connections).
    expect(took).toBeLessThan(4800);
    expect(deregistrations()).toBe(1);
    const timedOut = m.logs.find((l) =>
      String(l.msg).startsWith('Consul did not answer the deregistration in time'),
    );
    expect(timedOut).toMatchObject({ level: 'warn', serviceId: ID, timeoutMs: 2000 });
    expect(m.logs.find((l) => l.msg === 'marked critical in Consul for the drain')).toMatchObject({
      level: 'warn',
      ok: false,
    });
  });

  it('a registration whose answer was lost (connection reset) is still marked critical and deregistered', async () => {
    // The agent takes every registration, but the answer never reaches meshlet.
    double.setTampering({ path: '/v1/agent/service/register', body: 'x', resetAfterBytes: 0 });
    const m = await start();
    await double.waitFor((d) => d.instances('web').length === 1, 3000, 'held by the agent');
    await new Promise((r) => setTimeout(r, 250));
    await m.close();
    const marked = double.requests.filter(
      (r) => r.path === `/v1/agent/check/update/service:${ID}` && r.body.includes('shutting down'),
    );
    expect(marked).toHaveLength(1);
    expect(deregistrations()).toBe(1);
    expect(double.instances('web')).toEqual([]);
  });
});
