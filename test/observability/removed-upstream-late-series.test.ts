// A tunnel still open when its upstream leaves the catalog: once it ends, no series of that upstream is left on /metrics.
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { adminGet, consulRegistry, via, within } from '../consul/consul-helpers.ts';
import { startMeshlet } from '../helpers/meshlet.ts';
import { sampleLines, samplesMatching } from '../helpers/metrics.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { TunnelMetrics } from '../../src/telemetry/tunnel-metrics.ts';

/** A TCP echo server: what a CONNECT tunnel reaches (and, to an HTTP request, an invalid answer: 502). */
async function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

/** Opens `CONNECT authority` on the outbound listener; resolves with the socket once 200 came back. */
async function openTunnel(outboundPort: number, authority: string): Promise<Socket> {
  const socket = connect(outboundPort, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    let head = '';
    socket.on('error', reject);
    socket.on('data', function onData(chunk: Buffer) {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      if (head.startsWith('HTTP/1.1 200')) resolve();
      else reject(new Error(`CONNECT answered ${head.split('\r\n')[0]}`));
    });
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  });
  return socket;
}

/** Polls /upstreams until `name` has `total` endpoints, sending a request to it first (starts its watch). */
async function discovered(outbound: string, admin: string, name: string, total: number): Promise<void> {
  await within(
    3000,
    async () => {
      await via(outbound, name);
      const view = await adminGet<{ upstreams: Record<string, { total: number }> }>(admin, '/upstreams');
      return view.body.upstreams[name]?.total === total;
    },
    `${name} discovered`,
  );
}

describe('series of a removed upstream', () => {
  it('are all gone once a tunnel open across the removal has ended; other upstreams keep theirs', async () => {
    const double = new ConsulDouble();
    await double.start();
    const echo = await echoServer();
    const mesh = await startMeshlet({
      registry: consulRegistry(double, { register: false }),
      upstreams: { kept: {} },
      accessLog: { enabled: true, sampleRate: 1 },
      shutdown: { drainDelay: 0 },
    });
    try {
      await within(3000, async () => (await adminGet(mesh.admin, '/ready')).status === 200, 'ready');
      double.addInstance({ service: 'kept', id: 'kept-1', port: echo.port });
      double.addInstance({ service: 'gone', id: 'gone-1', port: echo.port });
      await discovered(mesh.outbound, mesh.admin, 'kept', 1);
      await discovered(mesh.outbound, mesh.admin, 'gone', 1);
      const socket = await openTunnel(Number(new URL(mesh.outbound).port), `gone:${echo.port}`);
      socket.write('ping');
      await new Promise((r) => socket.once('data', r));
      expect(await samplesMatching(mesh.admin, /^meshlet_tunnels_active\{.*upstream="gone"/)).toEqual([
        'meshlet_tunnels_active{direction="outbound",upstream="gone",kind="connect"} 1',
      ]);

      // gone leaves the catalog with the tunnel still open: the upstream is removed.
      double.removeInstance('gone-1');
      await within(3000, () => !mesh.daemon.table.has('gone'), 'upstream gone removed');
      // The tunnel ends afterwards, and counts its end (closed, bytes, active back to 0) under gone.
      socket.destroy();
      await within(
        3000,
        () =>
          mesh.logs.some((l) => l.msg === 'access' && l.kind === 'connect' && l.closeReason !== undefined),
        'tunnel ended',
      );

      // Nothing labelled gone is left, on this scrape or the next; kept's series and upstream="" stay.
      for (let scrape = 0; scrape < 2; scrape++) {
        expect(await samplesMatching(mesh.admin, /upstream="gone"/)).toEqual([]);
        expect((await samplesMatching(mesh.admin, /^meshlet_requests_total\{.*upstream="kept"/)).length).toBe(
          1,
        );
        expect((await samplesMatching(mesh.admin, /upstream="kept"/)).length).toBeGreaterThan(5);
      }
    } finally {
      await mesh.close();
      await double.stop();
      await new Promise((r) => echo.server.close(r));
    }
  }, 20_000);
});

describe('Metrics: late counts of a released upstream', () => {
  it('are dropped at every scrape until the name comes back, which then counts anew', async () => {
    const m = new Metrics({ processMetrics: false });
    const tunnels = new TunnelMetrics(m.registry);
    m.forUpstream('outbound', 'gone').finished(200, 0.01);
    m.forUpstream('outbound', 'stays').finished(200, 0.01);
    m.forUpstream('outbound', '').finished(404, 0.001);
    const open = { direction: 'outbound', upstream: 'gone', kind: 'websocket' };
    tunnels.active.inc(open);
    m.releaseUpstream('gone');
    const lines = async (): Promise<string[]> => sampleLines(await m.registry.metrics());
    // A tunnel still open is counted until it ends.
    expect((await lines()).filter((l) => l.includes('upstream="gone"'))).toEqual([
      'meshlet_tunnels_active{direction="outbound",upstream="gone",kind="websocket"} 1',
    ]);
    // Work that was under way ends and counts under the released name: none of it is shown.
    tunnels.active.dec(open);
    tunnels.closed.inc({ ...open, reason: 'closed' });
    m.resilience.attempts.labels('gone', 'reset').inc();
    m.resilience.breakerState.labels('gone', 'open').set(1);
    expect((await lines()).filter((l) => l.includes('upstream="gone"'))).toEqual([]);
    // Inbound series, other upstreams and upstream="" are untouched.
    const kept = await lines();
    expect(kept.filter((l) => l.includes('upstream="stays"')).length).toBeGreaterThan(0);
    expect(kept.filter((l) => l.includes('upstream=""')).length).toBeGreaterThan(0);
    // The name comes back: its new series are shown, from 0.
    m.forUpstream('outbound', 'gone').finished(500, 0.02);
    m.resilience.attempts.labels('gone', 'reset').inc();
    const back = (await lines()).filter((l) => l.includes('upstream="gone"'));
    expect(back).toContain(
      'meshlet_requests_total{direction="outbound",upstream="gone",status_class="5xx"} 1',
    );
    expect(back).toContain('meshlet_upstream_attempts_total{upstream="gone",result="reset"} 1');
  });
});
