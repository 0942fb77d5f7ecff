// An endpoint given by a host name that resolves to this host, at one of meshlet's own listener ports, is found when its connection opens: refused, nothing sent, no loop.
import { channel } from 'node:diagnostics_channel';
import { readFileSync, writeFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import type { Socket } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { FORWARDING_LOOP_WARNING, isOwnHostAddress } from '../../src/upstream/forwarding-loop.ts';
import { type InProcessMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { metricValue, sampleSum, scrapeMetrics } from '../helpers/metrics.ts';
import { closedPort, startUpstream } from '../helpers/upstream-server.ts';
import { upstreamState } from '../helpers/upstream-state.ts';
import { within } from '../consul/consul-helpers.ts';
import { makePki, tlsFilesConfig } from '../tls/tls-helpers.ts';

/** Longest a request may take, ms: refused at once (without the guard the loop took 10 s and ~1,300 connections). */
const ANSWER_WITHIN_MS = 3000;

/** No gRPC admin port (15002 is shared by every test), a drain bounded to 1 s, no access log. */
const QUIET = {
  accessLog: { enabled: false },
  shutdown: { drainDelay: 0, drainTimeout: '1s' },
} as const;

/** A single counted failure would trip them: an ejection after one connect failure, the breaker after one failed request. */
const TRIPWIRES = {
  outlierDetection: { consecutiveConnectFailure: 1, consecutiveGatewayFailure: 1, maxEjectionPercent: 100 },
  circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
} as const;

/**
 * A host name that really resolves to 127.0.0.1 here and that the discovery-time check does not
 * recognize (not `localhost`, not the host name): a loopback alias from /etc/hosts, or a usual one.
 */
async function loopbackAlias(): Promise<string> {
  const names = new Set<string>();
  try {
    for (const line of readFileSync('/etc/hosts', 'utf8').split('\n')) {
      const [address, ...aliases] = line.replace(/#.*/, '').trim().split(/\s+/);
      if (address?.startsWith('127.')) for (const a of aliases) names.add(a);
    }
  } catch {
    // no /etc/hosts: the usual names only
  }
  for (const n of ['localhost.localdomain', 'localhost4', 'ip6-localhost', 'ip6-loopback']) names.add(n);
  for (const name of names) {
    if (isOwnHostAddress(name)) continue;
    const found = await lookup(name, { all: true }).catch(() => []);
    if (found.some((a) => a.address === '127.0.0.1')) return name;
  }
  throw new Error(
    'no host name here resolves to 127.0.0.1 but localhost and the host name: add one to /etc/hosts (e.g. "127.0.0.1 meshlet-self")',
  );
}

/** Every connection accepted on `port` in this process (meshlet's listeners run here), from now on. */
function acceptedOn(port: number): { sockets: Socket[]; stop(): void } {
  const sockets: Socket[] = [];
  const accepted = channel('net.server.socket');
  const onSocket = (message: unknown): void => {
    const { socket } = message as { socket: Socket };
    if (socket.localPort === port) sockets.push(socket);
  };
  accepted.subscribe(onSocket);
  return { sockets, stop: () => accepted.unsubscribe(onSocket) };
}

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** GET `url` (Host `host` when given) bounded to {@link ANSWER_WITHIN_MS}: status, meshlet error, attempts header, time (ms). */
async function get(url: string, host?: string) {
  const started = performance.now();
  const res = await request(url, {
    headers: host === undefined ? {} : { host },
    signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
  });
  await res.body.dump();
  return {
    status: res.statusCode,
    error: res.headers['x-meshlet-error'],
    attempts: res.headers['x-meshlet-attempts'],
    ms: performance.now() - started,
  };
}

function loopWarnings(mesh: InProcessMeshlet, upstream: string): unknown[] {
  return mesh.logs
    .filter((l) => l.msg === FORWARDING_LOOP_WARNING && l.upstream === upstream)
    .map((l) => l.endpoint);
}

/** Nothing counted against the upstream's endpoints, breaker or retry budget. */
async function expectNothingCounted(mesh: InProcessMeshlet, upstream: string): Promise<void> {
  const text = await scrapeMetrics(mesh.admin);
  for (const result of ['connect_failure', 'reset', 'timeout']) {
    expect(sampleSum(text, 'meshlet_upstream_attempts_total', { upstream, result }), result).toBe(0);
  }
  expect(sampleSum(text, 'meshlet_upstream_connect_errors_total', { upstream })).toBe(0);
  expect(sampleSum(text, 'meshlet_outlier_ejections_total', { upstream })).toBe(0);
  expect(sampleSum(text, 'meshlet_retries_total', { upstream })).toBe(0);
  expect(sampleSum(text, 'meshlet_circuit_breaker_transitions_total', { upstream })).toBe(0);
  const state = await upstreamState(mesh.admin, upstream);
  expect(state.circuitBreaker).toBe('closed');
  expect(state.outlierDetection.ejectionsActive).toBe(0);
}

describe('forwarding loops through a host name that resolves to this host', () => {
  it(
    'a per-upstream listener whose only endpoint is a name for this host at its own port: 503 no_healthy_endpoints at once, one connection closed unused, no request looped, the endpoint shown as a loop',
    { timeout: 20_000 },
    async () => {
      const alias = await loopbackAlias();
      const own = await closedPort();
      const seen = acceptedOn(own);
      stops.push(seen.stop);
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { adminGrpc: { enabled: false } },
        registry: { type: 'static', endpoints: { users: [`${alias}:${own}`] } },
        upstreams: {
          users: {
            port: own,
            retries: { attempts: 3, retryOn: ['connect-failure', 'gateway-error', '5xx'] },
            ...TRIPWIRES,
          },
        },
      });
      stops.push(() => mesh.close());
      const endpoint = `${alias}:${own}`;
      // Accepted by discovery (a name is not resolved there): the guard acts at connect.
      expect(mesh.daemon.table.get('users')!.loopEndpoints).toEqual([]);
      for (let i = 0; i < 3; i++) {
        const r = await get(`http://127.0.0.1:${own}/v1/${i}`);
        expect([r.status, r.error]).toEqual([503, 'no_healthy_endpoints']);
        expect(r.attempts).toBe('0');
        expect(r.ms).toBeLessThan(ANSWER_WITHIN_MS);
      }
      // The listener accepted the three client requests' connections and one looped connection, closed
      // before a byte was sent; meshlet handled three requests, none of them a looped one.
      const looped = seen.sockets.filter((s) => s.bytesRead === 0);
      expect(looped.length).toBe(1);
      expect(seen.sockets.length - looped.length).toBeLessThanOrEqual(3);
      const text = await scrapeMetrics(mesh.admin);
      expect(sampleSum(text, 'meshlet_requests_total', { direction: 'outbound', upstream: 'users' })).toBe(3);
      expect(
        await metricValue(mesh.admin, 'meshlet_requests_active', {
          direction: 'outbound',
          upstream: 'users',
        }),
      ).toBe(0);
      // Set aside like a refusal at discovery: warned once, counted, shown, no pool left.
      const upstream = mesh.daemon.table.get('users')!;
      expect(upstream.loopEndpoints.map((e) => e.id)).toEqual([endpoint]);
      expect(upstream.endpoints).toEqual([]);
      expect(upstream.poolCount).toBe(0);
      expect(loopWarnings(mesh, 'users')).toEqual([endpoint]);
      const warning = mesh.logs.find((l) => l.msg === FORWARDING_LOOP_WARNING)!;
      expect(String(warning.detail)).toContain(`resolved to 127.0.0.1:${own}`);
      expect(sampleSum(text, 'meshlet_upstream_endpoints', { upstream: 'users', state: 'loop' })).toBe(1);
      expect(sampleSum(text, 'meshlet_upstream_endpoints', { upstream: 'users', state: 'healthy' })).toBe(0);
      const state = await upstreamState(mesh.admin, 'users');
      expect(state.endpoints.map((e) => [e.id, e.state as string, e.active])).toEqual([
        [endpoint, 'loop', 0],
      ]);
      expect([state.healthy, state.total]).toEqual([0, 1]);
      await expectNothingCounted(mesh, 'users');
    },
  );

  it(
    'the outbound listener (Host route) with a name for this host and a real endpoint: every request served by the real one without a retry; refused again after discovery delivers a different list',
    { timeout: 20_000 },
    async () => {
      const alias = await loopbackAlias();
      const real = await startUpstream();
      stops.push(() => real.close());
      const file = writeConfig('{}\n', 'endpoints.yaml');
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { adminGrpc: { enabled: false } },
        registry: { type: 'static', file },
        // No retries: the request moves off the looped endpoint all the same (nothing was sent).
        upstreams: { loop: { loadBalancer: 'round_robin', retries: { attempts: 1 }, ...TRIPWIRES } },
      });
      stops.push(() => mesh.close());
      const out = mesh.daemon.addresses().outbound.port;
      const seen = acceptedOn(out);
      stops.push(seen.stop);
      const endpoint = `${alias}:${out}`;
      const upstream = () => mesh.daemon.table.get('loop');
      const listed = () => (upstream()?.endpoints.length ?? 0) + (upstream()?.loopEndpoints.length ?? 0);

      const real2 = await startUpstream();
      stops.push(() => real2.close());
      const served = () => real.requests.length + real2.requests.length;
      const handles = () => upstream()?.endpoints.map((h) => h.endpoint.id);

      writeFileSync(file, `loop:\n  - "${endpoint}"\n  - "${real.endpoint}"\n  - "${real2.endpoint}"\n`);
      await within(5000, () => listed() === 3, 'endpoints file applied');
      expect(upstream()!.loopEndpoints).toEqual([]);
      for (let i = 0; i < 6; i++) {
        const r = await get(`${mesh.outbound}/v1/${i}`, 'loop');
        expect([r.status, r.error, r.attempts]).toEqual([200, undefined, '1']);
      }
      expect(served()).toBe(6);
      // The looped endpoint was picked and connected to once: that connection carried nothing.
      expect(seen.sockets.filter((s) => s.bytesRead === 0)).toHaveLength(1);
      expect(
        sampleSum(await scrapeMetrics(mesh.admin), 'meshlet_requests_total', {
          direction: 'outbound',
          upstream: 'loop',
        }),
      ).toBe(6);
      expect(upstream()!.loopEndpoints.map((e) => e.id)).toEqual([endpoint]);
      let state = await upstreamState(mesh.admin, 'loop');
      expect(state.endpoints.map((e) => [e.id, e.state as string])).toEqual([
        [real.endpoint, 'healthy'],
        [real2.endpoint, 'healthy'],
        [endpoint, 'loop'],
      ]);
      expect(loopWarnings(mesh, 'loop')).toEqual([endpoint]);
      expect(
        await metricValue(mesh.admin, 'meshlet_upstream_endpoints', { upstream: 'loop', state: 'loop' }),
      ).toBe(1);
      await expectNothingCounted(mesh, 'loop');

      // The same endpoints delivered again (reordered): still refused, not connected to or warned again.
      writeFileSync(file, `loop:\n  - "${real2.endpoint}"\n  - "${real.endpoint}"\n  - "${endpoint}"\n`);
      await within(
        5000,
        () => handles()?.join() === [real2.endpoint, real.endpoint].join(),
        'reordered list applied',
      );
      expect(upstream()!.loopEndpoints.map((e) => e.id)).toEqual([endpoint]);
      for (let i = 0; i < 4; i++) expect((await get(`${mesh.outbound}/v2/${i}`, 'loop')).status).toBe(200);
      expect(served()).toBe(10);
      expect(seen.sockets.filter((s) => s.bytesRead === 0)).toHaveLength(1);
      expect(loopWarnings(mesh, 'loop')).toEqual([endpoint]);

      // A different list: checked again (by address: accepted), found again at its first connection.
      writeFileSync(file, `loop:\n  - "${endpoint}"\n  - "${real.endpoint}"\n`);
      await within(
        5000,
        () => handles()?.join() === [endpoint, real.endpoint].join(),
        'different list applied',
      );
      for (let i = 0; i < 4; i++) {
        const r = await get(`${mesh.outbound}/v3/${i}`, 'loop');
        expect([r.status, r.attempts]).toEqual([200, '1']);
      }
      expect(served()).toBe(14);
      expect(seen.sockets.filter((s) => s.bytesRead === 0)).toHaveLength(2);
      expect(upstream()!.loopEndpoints.map((e) => e.id)).toEqual([endpoint]);
      expect(loopWarnings(mesh, 'loop')).toEqual([endpoint, endpoint]);
      state = await upstreamState(mesh.admin, 'loop');
      expect(state.endpoints.map((e) => [e.id, e.state as string])).toEqual([
        [real.endpoint, 'healthy'],
        [endpoint, 'loop'],
      ]);
      await expectNothingCounted(mesh, 'loop');
    },
  );

  it(
    'an HTTP/2 upstream (h2c) whose only endpoint is a name for this host at the outbound port: 503 no_healthy_endpoints at once, set aside as a loop',
    { timeout: 20_000 },
    async () => {
      const alias = await loopbackAlias();
      const out = await closedPort();
      const seen = acceptedOn(out);
      stops.push(seen.stop);
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { outbound: { port: out }, adminGrpc: { enabled: false } },
        registry: { type: 'static', endpoints: { loop: [`${alias}:${out}`] } },
        upstreams: { loop: { protocol: 'http2', ...TRIPWIRES } },
      });
      stops.push(() => mesh.close());
      for (let i = 0; i < 3; i++) {
        const r = await get(`${mesh.outbound}/x/${i}`, 'loop');
        expect([r.status, r.error]).toEqual([503, 'no_healthy_endpoints']);
      }
      expect(seen.sockets.filter((s) => s.bytesRead === 0)).toHaveLength(1);
      expect(
        sampleSum(await scrapeMetrics(mesh.admin), 'meshlet_requests_total', {
          direction: 'outbound',
          upstream: 'loop',
        }),
      ).toBe(3);
      expect(mesh.daemon.table.get('loop')!.loopEndpoints.map((e) => e.id)).toEqual([`${alias}:${out}`]);
      await expectNothingCounted(mesh, 'loop');
    },
  );

  it(
    'an mTLS endpoint given by a name for this host at the outbound port: refused once TCP connected, not counted as a handshake failure, 503 no_healthy_endpoints',
    { timeout: 20_000 },
    async () => {
      const alias = await loopbackAlias();
      const out = await closedPort();
      const seen = acceptedOn(out);
      stops.push(seen.stop);
      const mesh = await startMeshlet({
        ...QUIET,
        tls: await tlsFilesConfig(await makePki(), 'web'),
        listeners: { outbound: { port: out }, adminGrpc: { enabled: false } },
        registry: {
          type: 'static',
          endpoints: { orders: [{ address: alias, port: out, meta: { meshlet_inbound: 'mtls' } }] },
        },
        upstreams: { orders: TRIPWIRES },
      });
      stops.push(() => mesh.close());
      for (let i = 0; i < 3; i++) {
        const r = await get(`${mesh.outbound}/x/${i}`, 'orders');
        expect([r.status, r.error]).toEqual([503, 'no_healthy_endpoints']);
      }
      // Three client connections at most and the looped one (a TLS client hello may have reached it, no request).
      expect(seen.sockets.length).toBeLessThanOrEqual(4);
      const text = await scrapeMetrics(mesh.admin);
      expect(sampleSum(text, 'meshlet_requests_total', { direction: 'outbound', upstream: 'orders' })).toBe(
        3,
      );
      expect(
        sampleSum(text, 'meshlet_tls_handshakes_total', { direction: 'outbound', result: 'failed' }),
      ).toBe(0);
      expect(mesh.daemon.table.get('orders')!.loopEndpoints.map((e) => e.id)).toEqual([`${alias}:${out}`]);
      const state = await upstreamState(mesh.admin, 'orders');
      expect(state.endpoints.map((e) => [e.id, e.state as string])).toEqual([[`${alias}:${out}`, 'loop']]);
      await expectNothingCounted(mesh, 'orders');
    },
  );
});
