// `meshlet wait`: exit 0 once the running meshlet is ready, 1 when it is not within --timeout, 2 on a bad duration.
import { describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { runCli, startMeshlet } from '../helpers/meshlet.ts';
import { closedPort } from '../helpers/upstream-server.ts';

describe('meshlet wait', () => {
  it('exits 1 on timeout against a meshlet whose registry never syncs, saying why; exits 0 once it is ready', async () => {
    const port = await closedPort();
    const mesh = await startMeshlet({
      registry: { type: 'consul', consul: { address: `http://127.0.0.1:${port}` } },
      upstreams: { users: {} },
      shutdown: { drainDelay: 0 },
    });
    const double = new ConsulDouble();
    try {
      const started = performance.now();
      const timedOut = await runCli(['wait', '--admin', mesh.admin, '--timeout', '1500ms'], 10_000);
      expect(timedOut.code).toBe(1);
      expect(performance.now() - started).toBeGreaterThanOrEqual(1500);
      expect(timedOut.stderr).toMatch(/^meshlet: not ready after 1500 ms: registry: not synced yet/);

      // Consul comes up 500 ms into the wait: it returns 0 soon after the sync.
      const waiting = runCli(['wait', '--admin', mesh.admin, '--timeout', '10s'], 15_000);
      await new Promise((r) => setTimeout(r, 500));
      await double.start({ port });
      double.addInstance({ service: 'users', id: 'users-1', port: 9 });
      const ready = await waiting;
      expect(ready.code).toBe(0);
      expect((await fetch(`${mesh.admin}/ready`)).status).toBe(200);
    } finally {
      await mesh.close();
      await double.stop();
    }
  });

  it('exits 1 when nothing answers, naming the URL; 2 on a bad --timeout', async () => {
    const port = await closedPort();
    const none = await runCli(['wait', '--admin', `http://127.0.0.1:${port}`, '--timeout', '300ms'], 10_000);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(
      new RegExp(
        `not ready after 300 ms: cannot read http://127.0.0.1:${port}/ready\\?ignore=app: ECONNREFUSED`,
      ),
    );
    const bad = await runCli(['wait', '--timeout', 'soon'], 10_000);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--timeout: expected a duration/);
  });

  it("leaves the local app's check out (the app is what waits): ready while the app is down", async () => {
    const double = new ConsulDouble();
    await double.start();
    const appPort = await closedPort();
    const mesh = await startMeshlet({
      service: { name: 'web', port: appPort, address: '127.0.0.1' },
      registry: {
        type: 'consul',
        consul: { address: double.url },
        check: { interval: '200ms', timeout: '100ms' },
      } as never,
      shutdown: { drainDelay: 0 },
    });
    try {
      expect((await fetch(`${mesh.admin}/ready`)).status).toBe(503);
      const { code } = await runCli(['wait', '--admin', mesh.admin, '--timeout', '5s'], 10_000);
      expect(code).toBe(0);
    } finally {
      await mesh.close();
      await double.stop();
    }
  });
});
