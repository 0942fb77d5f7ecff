// Requests meshlet cuts at shutdown.drainTimeout: their access lines say `"cutBy":"drain"`, and the endpoint is not blamed.
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, peerEndpoint, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { until } from './wrapper-helpers.ts';

/** An upstream that never finishes: `/headers` gets no answer at all, `/body` gets its head and one chunk. */
async function slowUpstream(): Promise<{ upstream: TestUpstream; held: ServerResponse[] }> {
  const held: ServerResponse[] = [];
  const upstream = await startUpstream((req, res) => {
    req.resume();
    held.push(res);
    if (req.url === '/body') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk');
    }
  });
  return { upstream, held };
}

/** The access lines of `path`. */
function linesOf(logs: Record<string, unknown>[], path: string): Record<string, unknown>[] {
  return logs.filter((l) => l.msg === 'access' && l.path === path);
}

/** Sends GET `path` with `Host: host`; resolves with how it ended (never rejects). */
function send(base: string, host: string, path: string, signal?: AbortSignal): Promise<string> {
  return request(`${base}${path}`, { headers: { host }, signal, headersTimeout: 10_000, bodyTimeout: 10_000 })
    .then((r) => r.body.text())
    .then(
      (text) => `answered ${text}`,
      (err: Error) => `failed ${err.name}`,
    );
}

const STRICT = {
  // One failure would open the breaker, one gateway failure eject the endpoint.
  circuitBreaker: { errorThresholdPercentage: 1, volumeThreshold: 1 },
  outlierDetection: { consecutive5xx: 1, consecutiveGatewayFailure: 1, consecutiveConnectFailure: 1 },
  timeouts: { request: '10s', perTry: '10s' },
};

describe('requests cut at shutdown.drainTimeout', () => {
  const started: InProcessMeshlet[] = [];
  const upstreams: TestUpstream[] = [];

  afterEach(async () => {
    for (const m of started.splice(0).reverse()) await m.close();
    for (const u of upstreams.splice(0)) await u.close();
  });

  it('outbound: the lines say 499 with cutBy "drain"; a client that left by itself has no cutBy; the endpoint is not blamed', async () => {
    const { upstream } = await slowUpstream();
    upstreams.push(upstream);
    const mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { slow: [upstream.endpoint] } },
      upstreams: { slow: STRICT },
      accessLog: { enabled: true, sampleRate: 1 },
      shutdown: { drainDelay: 0, drainTimeout: '300ms' },
      listeners: { adminGrpc: { enabled: false } },
    });
    started.push(mesh);
    // A client that goes away by itself: 499, and nothing says meshlet cut it.
    const abort = new AbortController();
    const left = send(mesh.outbound, 'slow', '/left', abort.signal);
    await until(() => upstream.requests.length === 1, 3000, 'the first request upstream');
    abort.abort();
    expect(await left).toMatch(/^failed/);
    await until(() => linesOf(mesh.logs, '/left').length === 1, 3000, 'the /left line');
    expect(linesOf(mesh.logs, '/left')[0]).toMatchObject({ status: 499 });
    expect(linesOf(mesh.logs, '/left')[0]).not.toHaveProperty('cutBy');

    const waiting = send(mesh.outbound, 'slow', '/headers');
    const streaming = send(mesh.outbound, 'slow', '/body');
    await until(() => upstream.requests.length === 3, 3000, 'both requests upstream');
    const t0 = performance.now();
    await mesh.daemon.shutdown('test');
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(await waiting).toMatch(/^failed/);
    expect(await streaming).toMatch(/^failed/);
    for (const path of ['/headers', '/body']) {
      const lines = linesOf(mesh.logs, path);
      expect(lines, path).toHaveLength(1);
      expect(lines[0], path).toMatchObject({
        direction: 'outbound',
        upstream: 'slow',
        endpoint: upstream.endpoint,
        status: 499,
        cutBy: 'drain',
      });
      expect(lines[0], path).not.toHaveProperty('error');
    }
    const slow = mesh.daemon.table.get('slow')!;
    expect(slow.breaker?.state).toBe('closed');
    expect(slow.outlier.ejectionsActive).toBe(0);
  });

  it('inbound (mTLS): a peer request cut by the drain is logged 499 with cutBy "drain" on the inbound line', async () => {
    const { upstream: app } = await slowUpstream();
    upstreams.push(app);
    const pki = await makePki();
    const b = await startMeshlet({
      service: { name: 'users', port: app.port },
      listeners: {
        inbound: { address: '127.0.0.1', port: 0, allow: ['web'] },
        adminGrpc: { enabled: false },
      },
      tls: await tlsFilesConfig(pki, 'users'),
      shutdown: { drainDelay: 0, drainTimeout: '300ms' },
    });
    started.push(b);
    const a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: { type: 'static', endpoints: { users: [peerEndpoint(b)] } },
      upstreams: { users: STRICT },
      listeners: { adminGrpc: { enabled: false } },
    });
    started.unshift(a);
    const inboundOf = (path: string) =>
      b.logs.filter((l) => l.msg === 'access' && l.direction === 'inbound' && l.path === path);
    // A caller that goes away by itself: 499 without cutBy (and not 502: the local app did nothing wrong).
    const abort = new AbortController();
    const left = send(a.outbound, 'users', '/left', abort.signal);
    await until(() => app.requests.length === 1, 3000, 'the first request at the app');
    abort.abort();
    expect(await left).toMatch(/^failed/);
    await until(() => inboundOf('/left').length === 1, 3000, 'the /left inbound line');
    expect(inboundOf('/left')[0]).toMatchObject({ upstream: 'users', status: 499 });
    expect(inboundOf('/left')[0]).not.toHaveProperty('cutBy');
    expect(inboundOf('/left')[0]).not.toHaveProperty('error');

    const waiting = send(a.outbound, 'users', '/headers');
    await until(() => app.requests.length === 2, 3000, 'the request at the app');
    await b.daemon.shutdown('test');
    await waiting;
    const cut = inboundOf('/headers');
    expect(cut).toHaveLength(1);
    expect(cut[0]).toMatchObject({ upstream: 'users', status: 499, cutBy: 'drain' });
    expect(cut[0]).not.toHaveProperty('error');
  });
});
