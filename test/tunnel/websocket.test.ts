// Issue 13: WebSocket through meshlet — outbound listener, per-upstream port, two meshlets over mTLS; refusals and timeouts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort } from '../helpers/upstream-server.ts';
import { makePki, type TestPki, tlsFilesConfig, peerEndpoint } from '../tls/tls-helpers.ts';
import { closed, echoMany, openWs, startWsEcho, type WsEcho } from './ws-helpers.ts';

describe('WebSocket through meshlet', () => {
  let echo: WsEcho;
  let refusing: WsEcho;
  let deadPort: number;
  let mesh: InProcessMeshlet;
  let perUpstream: number;

  beforeAll(async () => {
    echo = await startWsEcho();
    refusing = await startWsEcho(403);
    deadPort = await closedPort();
    perUpstream = await closedPort();
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { echo: [echo.endpoint], guarded: [refusing.endpoint], dead: [`127.0.0.1:${deadPort}`] },
      },
      upstreams: {
        echo: { port: perUpstream },
        dead: { outlierDetection: { consecutiveConnectFailure: 2 } },
      },
      routes: [
        { match: { pathPrefix: '/ws/' }, upstream: 'echo' },
        { match: { pathPrefix: '/guarded/' }, upstream: 'guarded' },
        { match: { pathPrefix: '/dead/' }, upstream: 'dead' },
      ],
    });
  });
  afterAll(async () => {
    await mesh.close();
    await echo.close();
    await refusing.close();
  });

  for (const via of ['outbound listener', 'per-upstream port'] as const) {
    it(`${via}: 10,000 messages each way, text and binary, in order; 1 MiB frames; close codes both ways`, async () => {
      const url =
        via === 'outbound listener'
          ? `ws://127.0.0.1:${new URL(mesh.outbound).port}/ws/chat`
          : `ws://127.0.0.1:${perUpstream}/ws/chat`;
      const ws = await openWs(url);
      const small = await echoMany(ws, 10_000);
      expect(small.got).toEqual(small.sent);
      ws.removeAllListeners('message');
      const big = await echoMany(ws, 4, 1024 * 1024);
      expect(big.got).toEqual(big.sent);
      // The client closes with 4001: the server sees 4001.
      const before = echo.closeCodes.length;
      ws.close(4001, 'client done');
      await closed(ws);
      await until(() => echo.closeCodes.length > before);
      expect(echo.closeCodes.at(-1)).toBe(4001);
      // The server closes with 4002: the client sees 4002.
      const ws2 = await openWs(url);
      ws2.send('close:4002');
      expect(await closed(ws2)).toBe(4002);
      expect(echo.handshakes.at(-1)?.['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    });
  }

  it('an upstream that answers the handshake with 403 → the client gets 403 as it came', async () => {
    const err = (await openWs(`ws://127.0.0.1:${new URL(mesh.outbound).port}/guarded/x`).catch(
      (e: unknown) => e,
    )) as {
      status: number;
      body: string;
    };
    expect(err.status).toBe(403);
    expect(err.body).toBe('refused');
  });

  it('an upstream refusing connections → 502 upstream_unreachable, counted by outlier detection', async () => {
    for (let i = 0; i < 2; i++) {
      const err = (await openWs(`ws://127.0.0.1:${new URL(mesh.outbound).port}/dead/x`).catch(
        (e: unknown) => e,
      )) as {
        status: number;
        headers: Record<string, string>;
      };
      expect(err.status).toBe(502);
      expect(err.headers['x-meshlet-error']).toBe('upstream_unreachable');
    }
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_upstream_connect_errors_total\{upstream="dead"\} [1-9]/m);
    expect(metrics).toMatch(
      /^meshlet_tunnels_total\{direction="outbound",upstream="echo",kind="websocket",result="established"\} [1-9]/m,
    );
    expect(metrics).toMatch(
      /^meshlet_tunnel_bytes_total\{direction="outbound",upstream="echo",kind="websocket",flow="upstream"\} \d{6,}/m,
    );
  });

  it('an upgrade token that is not configured gets 400 bad_request', async () => {
    const reply = parseReply(
      await rawRequest(
        Number(new URL(mesh.outbound).port),
        'GET /ws/x HTTP/1.1\r\nHost: echo\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-meshlet-error']).toBe('bad_request');
    expect(reply.body).toContain('upstreams.echo.upgrades');
  });
});

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const t0 = performance.now();
  while (!check() && performance.now() - t0 < ms) await new Promise((r) => setTimeout(r, 10));
}

describe('WebSocket between two meshlets over mTLS', () => {
  let pki: TestPki;
  let echo: WsEcho;
  let a: InProcessMeshlet;
  let b: InProcessMeshlet;

  beforeAll(async () => {
    pki = await makePki();
    echo = await startWsEcho();
    b = await startMeshlet({
      service: { name: 'chat', port: echo.port },
      listeners: {
        inbound: {
          address: '127.0.0.1',
          port: 0,
          allow: ['web'],
          headersTimeout: '500ms',
          requestTimeout: '1s',
        },
      },
      tls: await tlsFilesConfig(pki, 'chat'),
    });
    a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: {
        type: 'static',
        endpoints: {
          chat: [peerEndpoint(b)],
        },
      },
      upstreams: { chat: { timeouts: { upgradeIdle: '1500ms' } } },
      routes: [{ match: { pathPrefix: '/' }, upstream: 'chat' }],
    });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await echo?.close();
  });

  it('app → A → mTLS → B → app: 10,000 messages each way in order, 1 MiB frames, close codes both ways; the app saw the caller identity', async () => {
    const ws = await openWs(`ws://127.0.0.1:${new URL(a.outbound).port}/room`);
    const r = await echoMany(ws, 10_000);
    expect(r.got).toEqual(r.sent);
    ws.removeAllListeners('message');
    const big = await echoMany(ws, 4, 1024 * 1024);
    expect(big.got).toEqual(big.sent);
    expect(echo.handshakes.at(-1)?.['x-meshlet-peer-identity']).toBe('web');
    const before = echo.closeCodes.length;
    ws.close(4001);
    await closed(ws);
    await until(() => echo.closeCodes.length > before);
    expect(echo.closeCodes.at(-1)).toBe(4001);
    const ws2 = await openWs(`ws://127.0.0.1:${new URL(a.outbound).port}/room`);
    ws2.send('close:4002');
    expect(await closed(ws2)).toBe(4002);
  });

  it("a tunnel idle past upgradeIdle is closed; one with traffic outlives B's 1 s requestTimeout", async () => {
    const url = `ws://127.0.0.1:${new URL(a.outbound).port}/room`;
    const idle = await openWs(url);
    const busy = await openWs(url);
    const idleClosed = closed(idle);
    let answers = 0;
    busy.on('message', () => answers++);
    const started = performance.now();
    const ticker = setInterval(() => busy.send('tick'), 300);
    const code = await idleClosed;
    const idleFor = performance.now() - started;
    expect(code).toBe(1006);
    expect(idleFor).toBeGreaterThanOrEqual(1400);
    expect(idleFor).toBeLessThan(3000);
    await new Promise((r) => setTimeout(r, 1500));
    clearInterval(ticker);
    expect(busy.readyState).toBe(busy.OPEN);
    expect(answers).toBeGreaterThanOrEqual(8);
    busy.close(1000);
    await closed(busy);
  });
});
