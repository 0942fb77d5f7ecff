// An endpoint that is meshlet's own listener (outbound, per-upstream, any address of this host) is refused: no forwarding loop.
import { writeFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { FORWARDING_LOOP_WARNING } from '../../src/upstream/forwarding-loop.ts';
import { type InProcessMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { metricValue } from '../helpers/metrics.ts';
import { closedPort, startUpstream } from '../helpers/upstream-server.ts';
import { upstreamState } from '../helpers/upstream-state.ts';
import { within } from '../consul/consul-helpers.ts';

/** Longest a refused request may take, ms: it is answered at once (a loop took 10 s and ~2,000 sockets). */
const ANSWER_WITHIN_MS = 3000;

/** No gRPC admin port (15002 is shared by every test), a drain bounded to 1 s, no access log. */
const QUIET = {
  accessLog: { enabled: false },
  shutdown: { drainDelay: 0, drainTimeout: '1s' },
} as const;

/** GET `url` (Host `host` when given) bounded to {@link ANSWER_WITHIN_MS}: status, meshlet error code, time taken (ms). */
async function get(url: string, host?: string): Promise<{ status: number; error: unknown; ms: number }> {
  const started = performance.now();
  const res = await request(url, {
    headers: host === undefined ? {} : { host },
    signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
  });
  await res.body.dump();
  return { status: res.statusCode, error: res.headers['x-meshlet-error'], ms: performance.now() - started };
}

function loopWarnings(mesh: InProcessMeshlet, upstream: string): unknown[] {
  return mesh.logs
    .filter((l) => l.msg === FORWARDING_LOOP_WARNING && l.upstream === upstream)
    .map((l) => l.endpoint);
}

describe('forwarding loops', () => {
  it(
    "a static endpoint at meshlet's own outbound listener is refused: 503 no_healthy_endpoints at once, nothing counted against it",
    { timeout: 20_000 },
    async () => {
      const out = await closedPort();
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { outbound: { port: out }, adminGrpc: { enabled: false } },
        registry: { type: 'static', endpoints: { loop: [`127.0.0.1:${out}`] } },
        // The route matches the forwarded request again (no stripPrefix): each hop would come back.
        routes: [{ match: { pathPrefix: '/loop/' }, upstream: 'loop' }],
        upstreams: {
          loop: { retries: { attempts: 3, retryOn: ['connect-failure', 'gateway-error', '5xx'] } },
        },
      });
      try {
        for (let i = 0; i < 3; i++) {
          const r = await get(`${mesh.outbound}/loop/x`);
          expect([r.status, r.error]).toEqual([503, 'no_healthy_endpoints']);
          expect(r.ms).toBeLessThan(ANSWER_WITHIN_MS);
        }
        // Nothing in flight, nothing sent: no request reached the outbound listener a second time.
        expect(
          await metricValue(mesh.admin, 'meshlet_requests_active', {
            direction: 'outbound',
            upstream: 'loop',
          }),
        ).toBe(0);
        for (const result of ['response', 'connect_failure', 'reset', 'timeout']) {
          expect(
            await metricValue(mesh.admin, 'meshlet_upstream_attempts_total', { upstream: 'loop', result }),
          ).toBe(0);
        }
        expect(
          await metricValue(mesh.admin, 'meshlet_upstream_connect_errors_total', { upstream: 'loop' }),
        ).toBe(0);
        // Refused once, warned once, counted, shown.
        expect(loopWarnings(mesh, 'loop')).toEqual([`127.0.0.1:${out}`]);
        expect(
          await metricValue(mesh.admin, 'meshlet_upstream_endpoints', { upstream: 'loop', state: 'loop' }),
        ).toBe(1);
        expect(
          await metricValue(mesh.admin, 'meshlet_upstream_endpoints', { upstream: 'loop', state: 'healthy' }),
        ).toBe(0);
        const state = await upstreamState(mesh.admin, 'loop');
        expect(state.endpoints.map((e) => [e.id, e.state as string, e.active])).toEqual([
          [`127.0.0.1:${out}`, 'loop', 0],
        ]);
        expect([state.healthy, state.total]).toEqual([0, 1]);
        // A refusal is no endpoint's failure: breaker closed, nobody ejected, no pool opened.
        expect(state.circuitBreaker).toBe('closed');
        expect(state.outlierDetection.ejectionsActive).toBe(0);
        expect(mesh.daemon.table.get('loop')!.poolCount).toBe(0);
      } finally {
        await mesh.close();
      }
    },
  );

  it(
    "a per-upstream listener's own port among its endpoints is never picked: every request goes to the real endpoint",
    { timeout: 20_000 },
    async () => {
      const real = await startUpstream();
      const own = await closedPort();
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { adminGrpc: { enabled: false } },
        registry: { type: 'static', endpoints: { users: [`127.0.0.1:${own}`, real.endpoint] } },
        upstreams: { users: { port: own, loadBalancer: 'round_robin' } },
      });
      try {
        for (let i = 0; i < 20; i++) {
          const r = await get(`http://127.0.0.1:${own}/v1/${i}`);
          expect([r.status, r.error]).toEqual([200, undefined]);
        }
        expect(real.requests).toHaveLength(20);
        // Each request entered meshlet once: none came back through the per-upstream listener.
        expect(
          await metricValue(mesh.admin, 'meshlet_requests_total', {
            direction: 'outbound',
            upstream: 'users',
            status_class: '2xx',
          }),
        ).toBe(20);
        const state = await upstreamState(mesh.admin, 'users');
        expect(state.endpoints.map((e) => [e.id, e.state as string])).toEqual([
          [real.endpoint, 'healthy'],
          [`127.0.0.1:${own}`, 'loop'],
        ]);
        expect([state.healthy, state.total]).toEqual([1, 2]);
        expect(loopWarnings(mesh, 'users')).toEqual([`127.0.0.1:${own}`]);
        expect(
          await metricValue(mesh.admin, 'meshlet_requests_active', {
            direction: 'outbound',
            upstream: 'users',
          }),
        ).toBe(0);
      } finally {
        await mesh.close();
        await real.close();
      }
    },
  );

  it(
    'every address of this host (loopback, unspecified, its name, each interface address) at the outbound port is refused, from a watched endpoints file, each warned of once',
    { timeout: 20_000 },
    async () => {
      const real = await startUpstream();
      const file = writeConfig('{}\n', 'endpoints.yaml');
      // The outbound listener on every address, so each of these would reach it.
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { outbound: { address: '0.0.0.0', port: 0 }, adminGrpc: { enabled: false } },
        registry: { type: 'static', file },
        routes: [{ match: { pathPrefix: '/loop/' }, upstream: 'loop' }],
      });
      try {
        const out = mesh.daemon.addresses().outbound.port;
        const interfaces = Object.values(networkInterfaces())
          .flatMap((infos) => infos ?? [])
          .map((i) => (i.family === 'IPv6' ? `[${i.address}]` : i.address));
        expect(interfaces).toContain('127.0.0.1');
        const hosts = [
          ...new Set([
            '127.0.0.1',
            '127.0.0.2',
            '0.0.0.0',
            '[::]',
            '[::ffff:127.0.0.1]',
            'localhost',
            hostname(),
            ...interfaces,
          ]),
        ];
        const loops = hosts.map((h) => `${h}:${out}`);
        writeFileSync(file, `loop:\n${loops.map((e) => `  - "${e}"\n`).join('')}`);
        const upstream = () => mesh.daemon.table.get('loop');
        const applied = () => (upstream()?.endpoints.length ?? 0) + (upstream()?.loopEndpoints.length ?? 0);
        await within(5000, () => applied() === loops.length, 'endpoints file applied');
        expect(upstream()!.loopEndpoints).toHaveLength(loops.length);
        const r = await get(`${mesh.outbound}/loop/x`);
        expect([r.status, r.error]).toEqual([503, 'no_healthy_endpoints']);
        const state = await upstreamState(mesh.admin, 'loop');
        expect(state.endpoints.every((e) => (e.state as string) === 'loop')).toBe(true);
        expect(state.endpoints).toHaveLength(loops.length);

        // A real endpoint added: it takes the traffic; the refused ones stay refused, not warned again.
        writeFileSync(file, `loop:\n${[...loops, real.endpoint].map((e) => `  - "${e}"\n`).join('')}`);
        await within(5000, () => upstream()?.endpoints.length === 1, 'real endpoint applied');
        for (let i = 0; i < 5; i++) expect((await get(`${mesh.outbound}/loop/${i}`)).status).toBe(200);
        expect(real.requests).toHaveLength(5);
        expect(loopWarnings(mesh, 'loop').sort()).toEqual([...loops].sort());
        expect(
          await metricValue(mesh.admin, 'meshlet_upstream_endpoints', { upstream: 'loop', state: 'loop' }),
        ).toBe(loops.length);

        // Gone from the file: no longer refused, the gauge back to 0.
        writeFileSync(file, `loop:\n  - "${real.endpoint}"\n`);
        await within(5000, () => upstream()?.loopEndpoints.length === 0, 'refused endpoints removed');
        expect(
          await metricValue(mesh.admin, 'meshlet_upstream_endpoints', { upstream: 'loop', state: 'loop' }),
        ).toBe(0);
      } finally {
        await mesh.close();
        await real.close();
      }
    },
  );
});
