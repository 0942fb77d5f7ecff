// Timeouts longer than Node's timers hold (over 2^31 − 1 ms, about 24.8 days) mean "practically never" for tunnels too, not "after 1 ms".
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { makePki, peerEndpoint, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { echoMany, openWs } from './ws-helpers.ts';

/** More than 2^31 − 1 ms: a bare setTimeout would fire it after 1 ms. */
const LONG = '1000h';

/** A WebSocket echo server that takes 100 ms to answer each handshake (well past a 1 ms cut). */
async function startDelayedEcho(): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((_req, res) => res.end('plain'));
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    setTimeout(
      () =>
        wss.handleUpgrade(req, socket, head, (ws) =>
          ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })),
        ),
      100,
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('tunnels with timeouts longer than 24.8 days', () => {
  let echo: { port: number; close(): Promise<void> };
  let a: InProcessMeshlet;
  let b: InProcessMeshlet;

  beforeAll(async () => {
    const pki = await makePki();
    echo = await startDelayedEcho();
    b = await startMeshlet({
      service: { name: 'chat', port: echo.port },
      listeners: {
        inbound: { address: '127.0.0.1', port: 0, allow: ['web'], appTimeout: LONG },
        adminGrpc: { enabled: false },
      },
      tls: await tlsFilesConfig(pki, 'chat'),
    });
    a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: {
        type: 'static',
        endpoints: {
          direct: [`127.0.0.1:${echo.port}`],
          quiet: [`127.0.0.1:${echo.port}`],
          chat: [peerEndpoint(b)],
        },
      },
      // A long request timeout (the per-try time defaults to it) and idle time, as for long polls.
      upstreams: {
        direct: { timeouts: { request: LONG, upgradeIdle: LONG } },
        quiet: { timeouts: { upgradeIdle: LONG } },
        chat: { timeouts: { request: '5s' } },
      },
      listeners: { adminGrpc: { enabled: false } },
    });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await echo?.close();
  });

  const url = (): string => `ws://127.0.0.1:${new URL(a.outbound).port}/room`;

  it('timeouts.request: 1000h — the handshake is not cut after 1 ms (it was 504 upstream_timeout)', async () => {
    const ws = await openWs(url(), { host: 'direct' });
    const r = await echoMany(ws, 10);
    expect(r.got).toEqual(r.sent);
    ws.close();
  });

  it('listeners.inbound.appTimeout: 1000h — a peer meshlet does not answer the upgrade 504 after 1 ms', async () => {
    const ws = await openWs(url(), { host: 'chat' });
    const r = await echoMany(ws, 10);
    expect(r.got).toEqual(r.sent);
    ws.close();
  });

  it('upgradeIdle: 1000h keeps a quiet tunnel open, without a TimeoutOverflowWarning per tunnel', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      if (w.name === 'TimeoutOverflowWarning') warnings.push(w.message);
    };
    process.on('warning', onWarning);
    try {
      const ws = await openWs(url(), { host: 'quiet' });
      await new Promise((r) => setTimeout(r, 200));
      const r = await echoMany(ws, 2);
      expect(r.got).toEqual(r.sent);
      ws.close();
      await new Promise((r) => setImmediate(r));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
