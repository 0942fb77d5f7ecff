// An endpoint dies under steady traffic: no client sees a failure, it is ejected, and it comes back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('an endpoint killed during a steady stream of GETs', () => {
  let apps: TestUpstream[];
  let mesh: InProcessMeshlet;
  const agent = new Agent({ connections: 4 });

  beforeAll(async () => {
    apps = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: apps.map((a) => a.endpoint) } },
      upstreams: {
        users: {
          retries: { attempts: 3, retryOn: ['connect-failure', 'reset', 'gateway-error'] },
          outlierDetection: { consecutiveConnectFailure: 2, baseEjectionTime: '1500ms' },
        },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await agent.close();
    await Promise.all(apps.map((a) => a.close()));
  });

  async function state(id: string): Promise<string | undefined> {
    const body = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
      upstreams: { users: { endpoints: { id: string; state: string }[] } };
    };
    return body.upstreams.users.endpoints.find((e) => e.id === id)?.state;
  }

  it('zero failed requests, the dead endpoint ejected, then used again once back', async () => {
    const victim = apps[1]!;
    const seenPorts = new Map<number, number>();
    let failures = 0;
    let sent = 0;
    let stop = false;
    const phase = { killed: false, back: false };
    const afterBack = new Map<number, number>();
    const client = async () => {
      while (!stop) {
        const res = await request(`${mesh.outbound}/`, { headers: { host: 'users' }, dispatcher: agent });
        sent++;
        const port = Number(res.headers['x-upstream-port']);
        await res.body.dump();
        if (res.statusCode !== 200) failures++;
        else {
          seenPorts.set(port, (seenPorts.get(port) ?? 0) + 1);
          if (phase.back) afterBack.set(port, (afterBack.get(port) ?? 0) + 1);
        }
      }
    };
    const clients = [client(), client(), client(), client()];
    await new Promise((r) => setTimeout(r, 300));
    await victim.close();
    phase.killed = true;
    const t0 = performance.now();
    let ejected = false;
    while (performance.now() - t0 < 1500) {
      if ((await state(victim.endpoint)) === 'ejected') {
        ejected = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(ejected).toBe(true);
    // Bring it back on the same port; the ejection ends after 1.5 s and traffic returns.
    apps[1] = await startUpstream(undefined, victim.port);
    phase.back = true;
    const t1 = performance.now();
    while (performance.now() - t1 < 4000 && (afterBack.get(victim.port) ?? 0) < 5) {
      await new Promise((r) => setTimeout(r, 50));
    }
    stop = true;
    await Promise.all(clients);
    expect(failures).toBe(0);
    expect(sent).toBeGreaterThan(100);
    expect(afterBack.get(victim.port) ?? 0).toBeGreaterThanOrEqual(5);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_outlier_ejections_total\{upstream="users",kind="connect"\} [1-9]/m);
  });
});
