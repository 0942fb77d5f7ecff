// SIGTERM drains: in-flight requests finish, new connections are refused, the process exits 0.
import { connect } from 'node:net';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('graceful shutdown', () => {
  let slow: TestUpstream;
  let arrived = 0;

  beforeAll(async () => {
    slow = await startUpstream((_req, res) => {
      arrived++;
      setTimeout(() => res.end('done'), 1500).unref();
    });
  });
  afterAll(() => slow.close());

  it('SIGTERM during 20 slow in-flight requests: all complete with 200, new connections refused, exit 0', async () => {
    const mesh = await spawnMeshlet({
      registry: { type: 'static', endpoints: { slow: [slow.endpoint] } },
      shutdown: { drainDelay: 0, drainTimeout: '10s' },
    });
    const port = Number(new URL(mesh.outbound).port);
    const agent = new Agent({ connections: 20 });
    const inflight = Array.from({ length: 20 }, () =>
      request(`${mesh.outbound}/work`, { headers: { host: 'slow' }, dispatcher: agent }).then(
        async (res) => ({
          status: res.statusCode,
          body: await res.body.text(),
        }),
      ),
    );
    const started = performance.now();
    while (arrived < 20 && performance.now() - started < 5000) await new Promise((r) => setTimeout(r, 10));
    expect(arrived).toBe(20);

    mesh.proc.kill('SIGTERM');
    // Stop accepting happens right away (drainDelay 0): poll until the port refuses.
    let refused = false;
    const t0 = performance.now();
    while (performance.now() - t0 < 1000) {
      if (!(await canConnect(port))) {
        refused = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(refused).toBe(true);

    const results = await Promise.all(inflight);
    expect(results.every((r) => r.status === 200 && r.body === 'done')).toBe(true);
    expect(await mesh.exited).toBe(0);
    await agent.close();
    const logs = mesh.stdout.map((l) => JSON.parse(l) as { msg: string; outcome?: string });
    expect(logs.find((l) => l.msg === 'meshlet stopped')?.outcome).toBe('drained');
  });
});
