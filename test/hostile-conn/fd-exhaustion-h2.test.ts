// Out of file descriptors, a request to an HTTP/2 upstream (h2c) whose session is not open yet: 503 overloaded, one attempt, no endpoint blamed, one warning; served again after.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MeshletProcess } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { metric, openConnection, requestOn } from './conn-helpers.ts';
import {
  fdWarnings,
  floodUntilExhausted,
  type H2App,
  killLimited,
  spawnLimited,
  startH2App,
} from './fd-flood.ts';

/** Outlier detection that ejects an endpoint on its first blamed failure. */
const SENSITIVE = { consecutiveGatewayFailure: 1, consecutiveConnectFailure: 1, consecutive5xx: 1 };

describe('file descriptors exhausted (EMFILE), HTTP/2 upstream', () => {
  let warm: TestUpstream;
  let a: H2App;
  let b: H2App;
  let m: MeshletProcess;
  let pid: number;
  beforeAll(async () => {
    warm = await startUpstream();
    a = await startH2App();
    b = await startH2App();
    ({ m, pid } = await spawnLimited({
      listeners: { adminGrpc: { enabled: false } },
      registry: { endpoints: { warm: [warm.endpoint], fast: [a.endpoint, b.endpoint] } },
      // One blamed failure would eject an endpoint: any blame shows.
      upstreams: { fast: { protocol: 'http2', outlierDetection: SENSITIVE } },
    }));
  }, 30_000);
  afterAll(async () => {
    await killLimited(m);
    await warm?.close();
    for (const h of [a, b]) await h?.close();
  });

  it('answers 503 overloaded without a retry or blame on either endpoint, warns once, then serves again over HTTP/2', async () => {
    const port = Number(new URL(m.outbound).port);
    const held = await openConnection(port);
    expect(await requestOn(held, 'warm')).toMatch(/^HTTP\/1\.1 200 /);

    const release = await floodUntilExhausted(port, pid);
    try {
      // No HTTP/2 session to `fast` is open yet: each request needs a new connection, and gets EMFILE.
      for (let i = 0; i < 3; i++) {
        const reply = await requestOn(held, 'fast', `/during-${i}`);
        expect(reply).toMatch(/^HTTP\/1\.1 503 /);
        expect(reply).toContain('x-meshlet-error: overloaded');
        expect(reply).toContain('out of file descriptors');
        expect(reply).toContain('x-meshlet-attempts: 1');
      }
    } finally {
      held.destroy();
      await release();
    }

    const again = await openConnection(port);
    try {
      for (let i = 0; i < 2; i++) {
        const reply = await requestOn(again, 'fast', `/after-${i}`);
        expect(reply).toMatch(/^HTTP\/1\.1 200 /);
        expect(reply).toMatch(/\r\nh2 \d+\r\n/);
      }
    } finally {
      again.destroy();
    }
    // Round robin over two healthy endpoints: each got one of the two.
    expect([a.requests(), b.requests()]).toEqual([1, 1]);
    const view = (await (await request(`${m.admin}/upstreams`)).body.json()) as {
      upstreams: Record<string, { endpoints: { state: string }[]; circuitBreaker: string }>;
    };
    expect(view.upstreams.fast!.endpoints.map((e) => e.state)).toEqual(['healthy', 'healthy']);
    expect(view.upstreams.fast!.circuitBreaker).toBe('closed');
    const labels = { upstream: 'fast' };
    expect(await metric(m.admin, 'meshlet_upstream_connect_errors_total', labels)).toBe(0);
    expect(await metric(m.admin, 'meshlet_upstream_attempts_total', { ...labels, result: 'reset' })).toBe(0);
    expect(await metric(m.admin, 'meshlet_retries_total', labels)).toBe(0);
    expect(await metric(m.admin, 'meshlet_local_replies_total', { ...labels, code: 'overloaded' })).toBe(3);
    const warnings = fdWarnings(m);
    expect(warnings).toHaveLength(1);
    expect(JSON.parse(warnings[0]!)).toMatchObject({ level: 'warn', code: 'EMFILE', upstream: 'fast' });
  }, 30_000);
});
