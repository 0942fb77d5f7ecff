// An ejected endpoint stays ejected (same handle, pool and counts) when discovery re-sends it with only its weight, tags or meta changed.
import { writeFileSync } from 'node:fs';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { upstreamSpec } from '../../src/config/schema.ts';
import { makeEndpoint } from '../../src/upstream/endpoint.ts';
import { Upstream } from '../../src/upstream/upstream.ts';
import { resolveUpstreamSettings } from '../../src/upstream/upstream-settings.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { type InProcessMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { samplesMatching } from '../helpers/metrics.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

interface AdminEndpoint {
  port: number;
  weight: number;
  tags: string[];
  state: string;
}

async function endpointsOf(admin: string): Promise<AdminEndpoint[]> {
  const res = await request(`${admin}/upstreams`);
  const body = (await res.body.json()) as { upstreams: Record<string, { endpoints: AdminEndpoint[] }> };
  return body.upstreams.users!.endpoints;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function reloadsOk(admin: string): Promise<number> {
  const lines = await samplesMatching(
    admin,
    /^meshlet_config_reloads_total\{source="endpoints_file",result="ok"\} /,
  );
  return lines.length === 0 ? 0 : Number(lines[0]!.split(' ').pop());
}

describe('an ejected endpoint re-sent by discovery with new weight, tags or meta (real meshlet, registry.file)', () => {
  const good: TestUpstream[] = [];
  let bad: TestUpstream;
  let mesh: InProcessMeshlet;
  let file: string;
  const entries = (badExtra: Record<string, unknown>) => ({
    users: [...good.map((g) => g.endpoint), { address: '127.0.0.1', port: bad.port, ...badExtra }],
  });

  beforeAll(async () => {
    for (let i = 0; i < 2; i++) good.push(await startUpstream());
    bad = await startUpstream((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(502).end('bad'));
    });
    file = writeConfig(entries({ meta: { version: 'v1' } }) as never, 'endpoints.yaml');
    mesh = await startMeshlet({
      registry: { type: 'static', file },
      upstreams: {
        users: {
          loadBalancer: 'weighted',
          outlierDetection: { consecutiveGatewayFailure: 2, consecutive5xx: 2, baseEjectionTime: '60s' },
        },
      },
    } as never);
  });
  afterAll(async () => {
    await mesh?.close();
    for (const u of [...good, bad]) await u?.close();
  });

  async function get(): Promise<number> {
    const res = await request(`${mesh.outbound}/x`, { headers: { host: 'users' } });
    await res.body.dump();
    return res.statusCode;
  }

  async function badState(): Promise<AdminEndpoint> {
    return (await endpointsOf(mesh.admin)).find((e) => e.port === bad.port)!;
  }

  it('takes no traffic after a weight change, nor after a meta-only change', async () => {
    // Eject the failing endpoint (502s, retried onto the good ones).
    for (let i = 0; i < 60 && (await badState()).state !== 'ejected'; i++) await get();
    expect((await badState()).state).toBe('ejected');

    // Weight and tags change: the endpoint stays ejected and gets no request.
    const hitsBefore = bad.requests.length;
    writeFileSync(file, stringify(entries({ weight: 5, tags: ['canary'], meta: { version: 'v1' } })));
    await until('the new weight', async () => (await badState()).weight === 5);
    expect(await badState()).toMatchObject({ weight: 5, tags: ['canary'], state: 'ejected' });
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push(await get());
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(bad.requests.length - hitsBefore).toBe(0);

    // Meta only: the same.
    const reloads = await reloadsOk(mesh.admin);
    writeFileSync(file, stringify(entries({ weight: 5, tags: ['canary'], meta: { version: 'v2' } })));
    await until('the meta-only reload', async () => (await reloadsOk(mesh.admin)) > reloads);
    expect((await badState()).state).toBe('ejected');
    for (let i = 0; i < 30; i++) expect(await get()).toBe(200);
    expect(bad.requests.length - hitsBefore).toBe(0);
    const ejected = await samplesMatching(
      mesh.admin,
      /^meshlet_upstream_endpoints\{upstream="users",state="ejected"\} /,
    );
    expect(ejected).toEqual(['meshlet_upstream_endpoints{upstream="users",state="ejected"} 1']);
  });
});

describe('Upstream.setEndpoints with the same id and other fields', () => {
  it('keeps the handle (ejection, multiplier, counts, in-flight, pool); a new protocol gets a new pool only', async () => {
    const server = await startUpstream();
    const other = await startUpstream();
    const settings = resolveUpstreamSettings(
      upstreamSpec.parse({ outlierDetection: { consecutiveGatewayFailure: 1, consecutive5xx: 1 } }),
      'users',
    );
    const upstream = new Upstream('users', settings, new Metrics());
    try {
      upstream.setEndpoints([makeEndpoint('127.0.0.1', server.port), makeEndpoint('127.0.0.1', other.port)]);
      const [h, o] = upstream.endpoints;
      const pool = upstream.poolOf(h!);
      expect(pool).toBeDefined();
      h!.active = 3;
      expect(upstream.outlier.onFailure(h!, 'gateway')).toBe(true);
      const until1 = upstream.outlier.nextTickAtMs();

      upstream.setEndpoints([
        makeEndpoint('127.0.0.1', server.port, { weight: 4, tags: ['canary'], meta: { v: '2' } }),
        makeEndpoint('127.0.0.1', other.port),
      ]);
      expect(upstream.endpoints[0]).toBe(h);
      expect(upstream.endpoints[1]).toBe(o);
      expect(h!.endpoint).toMatchObject({ weight: 4, tags: ['canary'], meta: { v: '2' } });
      expect(h!.ejected).toBe(true);
      expect(h!.active).toBe(3);
      expect(upstream.outlier.nextTickAtMs()).toBe(until1);
      expect(upstream.usable).toBe(true);
      // Only the un-ejected endpoint is picked (the balancer was rebuilt without the ejected one).
      for (let i = 0; i < 10; i++) expect(upstream.pick(undefined, undefined)).toBe(o);
      expect(upstream.poolOf(h!)).toBe(pool);

      // A protocol change: same handle and ejection, a new pool on next use.
      upstream.setEndpoints([
        makeEndpoint('127.0.0.1', server.port, { weight: 4, tags: ['canary'], protocol: 'http2' }),
        makeEndpoint('127.0.0.1', other.port),
      ]);
      expect(upstream.endpoints[0]).toBe(h);
      expect(h!.ejected).toBe(true);
      const pool2 = upstream.poolOf(h!);
      expect(pool2).toBeDefined();
      expect(pool2).not.toBe(pool);
      expect(upstream.poolCount).toBe(1);
    } finally {
      await upstream.close();
      await server.close();
      await other.close();
    }
  });
});
