// A WebSocket or CONNECT tunnel to an endpoint whose host name resolves to this host, at one of meshlet's own listener ports, is refused when its connection opens: nothing sent, no loop.
import { afterEach, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { sampleSum, scrapeMetrics } from '../helpers/metrics.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort } from '../helpers/upstream-server.ts';
import { upstreamState } from '../helpers/upstream-state.ts';
import { makePki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { closed, echoMany, openWs, startWsEcho, type WebSocket } from '../tunnel/ws-helpers.ts';
import {
  acceptedOn,
  expectNothingCounted,
  loopbackAlias,
  loopWarnings,
  QUIET,
  TRIPWIRES,
} from './loop-fixtures.ts';

/** Longest a tunnel handshake may take, ms: answered at once (without the guard it looped or was opened to meshlet itself). */
const ANSWER_WITHIN_MS = 3000;

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** Opens a WebSocket, failing after {@link ANSWER_WITHIN_MS}. */
async function openWithin(url: string): Promise<WebSocket> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${url}: no handshake answer within ${ANSWER_WITHIN_MS} ms`)),
      ANSWER_WITHIN_MS,
    );
  });
  try {
    return await Promise.race([openWs(url), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A raw CONNECT for `authority` on the listener at `port`: the status, meshlet's error and attempts headers, and whether the connection closed in time. */
async function connectVia(port: number, authority: string) {
  const started = performance.now();
  const reply = await rawRequest(
    port,
    `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`,
    ANSWER_WITHIN_MS,
  );
  const ms = performance.now() - started;
  const parsed = parseReply(reply);
  return {
    status: parsed.status,
    error: parsed.headers['x-meshlet-error'],
    attempts: parsed.headers['x-meshlet-attempts'],
    ms,
  };
}

/** `meshlet_tunnels_total` of outbound tunnels to `upstream` with `result`. */
async function tunnels(mesh: InProcessMeshlet, upstream: string, result: string): Promise<number> {
  return sampleSum(await scrapeMetrics(mesh.admin), 'meshlet_tunnels_total', {
    direction: 'outbound',
    upstream,
    result,
  });
}

describe('forwarding loops through a host name that resolves to this host, for tunnels', () => {
  it(
    'WebSocket on the outbound listener, a name for this host at the outbound port and a real endpoint: every tunnel opened to the real one, the looped connection closed unused, the endpoint set aside, nothing counted',
    { timeout: 20_000 },
    async () => {
      const alias = await loopbackAlias();
      const echo = await startWsEcho();
      stops.push(() => echo.close());
      const out = await closedPort();
      const seen = acceptedOn(out);
      stops.push(seen.stop);
      const endpoint = `${alias}:${out}`;
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { outbound: { port: out }, adminGrpc: { enabled: false } },
        registry: { type: 'static', endpoints: { chat: [endpoint, echo.endpoint] } },
        // No retries: the tunnel moves off the looped endpoint all the same (nothing was sent).
        upstreams: { chat: { loadBalancer: 'round_robin', retries: { attempts: 1 }, ...TRIPWIRES } },
        routes: [{ match: { pathPrefix: '/ws/' }, upstream: 'chat' }],
      });
      stops.push(() => mesh.close());
      for (let i = 0; i < 3; i++) {
        const ws = await openWithin(`ws://127.0.0.1:${out}/ws/${i}`);
        const { sent, got } = await echoMany(ws, 4);
        expect(got).toEqual(sent);
        ws.close(1000);
        await closed(ws);
      }
      expect(echo.handshakes).toHaveLength(3);
      // The looped endpoint was picked and connected to once: that connection carried nothing.
      expect(seen.sockets.filter((s) => s.bytesRead === 0)).toHaveLength(1);
      expect(await tunnels(mesh, 'chat', 'established')).toBe(3);
      expect(await tunnels(mesh, 'chat', 'failed')).toBe(0);
      // Set aside exactly as for HTTP: warned once, counted, shown.
      expect(mesh.daemon.table.get('chat')!.loopEndpoints.map((e) => e.id)).toEqual([endpoint]);
      expect(loopWarnings(mesh, 'chat')).toEqual([endpoint]);
      const text = await scrapeMetrics(mesh.admin);
      expect(sampleSum(text, 'meshlet_upstream_endpoints', { upstream: 'chat', state: 'loop' })).toBe(1);
      const state = await upstreamState(mesh.admin, 'chat');
      expect(state.endpoints.map((e) => [e.id, e.state as string])).toEqual([
        [echo.endpoint, 'healthy'],
        [endpoint, 'loop'],
      ]);
      await expectNothingCounted(mesh, 'chat');
    },
  );

  it(
    'CONNECT on the outbound listener to an upstream whose only endpoint is a name for this host at the outbound port: 503 no_healthy_endpoints at once, no tunnel to meshlet itself',
    { timeout: 20_000 },
    async () => {
      const alias = await loopbackAlias();
      const out = await closedPort();
      const seen = acceptedOn(out);
      stops.push(seen.stop);
      const endpoint = `${alias}:${out}`;
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { outbound: { port: out }, adminGrpc: { enabled: false } },
        registry: { type: 'static', endpoints: { raw: [endpoint] } },
        upstreams: { raw: { retries: { attempts: 3, retryOn: ['connect-failure'] }, ...TRIPWIRES } },
      });
      stops.push(() => mesh.close());
      for (let i = 0; i < 3; i++) {
        const r = await connectVia(out, 'raw:443');
        expect([r.status, r.error, r.attempts]).toEqual([503, 'no_healthy_endpoints', '0']);
        expect(r.ms).toBeLessThan(ANSWER_WITHIN_MS);
      }
      // Three client connections and the looped one, closed before a byte was written.
      expect(seen.sockets.filter((s) => s.bytesRead === 0)).toHaveLength(1);
      expect(seen.sockets).toHaveLength(4);
      expect(await tunnels(mesh, 'raw', 'established')).toBe(0);
      expect(await tunnels(mesh, 'raw', 'failed')).toBe(3);
      expect(mesh.daemon.table.get('raw')!.loopEndpoints.map((e) => e.id)).toEqual([endpoint]);
      expect(loopWarnings(mesh, 'raw')).toEqual([endpoint]);
      await expectNothingCounted(mesh, 'raw');
    },
  );

  it(
    'CONNECT to an mTLS endpoint given by a name for this host at the outbound port: refused once TCP connected, not counted as a handshake failure, 503 no_healthy_endpoints',
    { timeout: 20_000 },
    async () => {
      const alias = await loopbackAlias();
      const out = await closedPort();
      const seen = acceptedOn(out);
      stops.push(seen.stop);
      const endpoint = `${alias}:${out}`;
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
        const r = await connectVia(out, 'orders:443');
        expect([r.status, r.error, r.attempts]).toEqual([503, 'no_healthy_endpoints', '0']);
      }
      // Three client connections and the looped one (a TLS client hello may have reached it, no request).
      expect(seen.sockets).toHaveLength(4);
      const text = await scrapeMetrics(mesh.admin);
      expect(
        sampleSum(text, 'meshlet_tls_handshakes_total', { direction: 'outbound', result: 'failed' }),
      ).toBe(0);
      expect(await tunnels(mesh, 'orders', 'failed')).toBe(3);
      expect(mesh.daemon.table.get('orders')!.loopEndpoints.map((e) => e.id)).toEqual([endpoint]);
      expect(loopWarnings(mesh, 'orders')).toEqual([endpoint]);
      await expectNothingCounted(mesh, 'orders');
    },
  );
});
