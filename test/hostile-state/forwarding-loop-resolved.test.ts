// An endpoint given by a host name that resolves to this host, at one of meshlet's own listener ports, is found when its connection opens: refused, nothing sent, no loop.
import { writeFileSync } from 'node:fs';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { FORWARDING_LOOP_WARNING } from '../../src/upstream/forwarding-loop.ts';
import { startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { metricValue, sampleSum, scrapeMetrics } from '../helpers/metrics.ts';
import { closedPort, startUpstream } from '../helpers/upstream-server.ts';
import { upstreamState } from '../helpers/upstream-state.ts';
import { within } from '../consul/consul-helpers.ts';
import { makePki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import {
  acceptedOn,
  expectNothingCounted,
  loopbackAlias,
  loopWarnings,
  QUIET,
  TRIPWIRES,
} from './loop-fixtures.ts';

/** Longest a request may take, ms: refused at once (without the guard the loop took 10 s and ~1,300 connections). */
const ANSWER_WITHIN_MS = 3000;

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
  it(
    'an upstream with a fallback whose only endpoint is a name for this host at the outbound port: the request moves to the fallback (a failover), nothing counted against the primary',
    { timeout: 20_000 },
    async () => {
      const alias = await loopbackAlias();
      const backup = await startUpstream();
      stops.push(() => backup.close());
      const out = await closedPort();
      const seen = acceptedOn(out);
      stops.push(seen.stop);
      const endpoint = `${alias}:${out}`;
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { outbound: { port: out }, adminGrpc: { enabled: false } },
        registry: { type: 'static', endpoints: { users: [endpoint], backup: [backup.endpoint] } },
        // No retries: nothing was sent anywhere, so the request moves all the same.
        upstreams: { users: { fallback: 'backup', retries: { attempts: 1 }, ...TRIPWIRES }, backup: {} },
      });
      stops.push(() => mesh.close());
      const failovers = async () =>
        sampleSum(await scrapeMetrics(mesh.admin), 'meshlet_failovers_total', {
          upstream: 'users',
          fallback: 'backup',
        });
      // The first request finds the loop at connect and moves; the next ones go to the fallback at
      // admission (the primary has no usable endpoint left). Each one is a failover.
      for (let i = 0; i < 3; i++) {
        const r = await get(`${mesh.outbound}/v1/${i}`, 'users');
        expect([r.status, r.error, r.attempts]).toEqual([200, undefined, '1']);
        expect(r.ms).toBeLessThan(ANSWER_WITHIN_MS);
        expect(await failovers()).toBe(i + 1);
      }
      expect(backup.requests.map((q) => q.url)).toEqual(['/v1/0', '/v1/1', '/v1/2']);
      expect(seen.sockets.filter((s) => s.bytesRead === 0)).toHaveLength(1);
      expect(mesh.daemon.table.get('users')!.loopEndpoints.map((e) => e.id)).toEqual([endpoint]);
      expect(loopWarnings(mesh, 'users')).toEqual([endpoint]);
      await expectNothingCounted(mesh, 'users');
    },
  );
});
