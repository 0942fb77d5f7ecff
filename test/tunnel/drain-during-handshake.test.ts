// A tunnel whose handshake is still in flight when the drain starts goes away like the others once it opens, instead of holding the exit to drainTimeout.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { startMeshlet } from '../helpers/meshlet.ts';
import { until } from './raw-tunnel-helpers.ts';
import { closed, WebSocket } from './ws-helpers.ts';

/**
 * A WebSocket echo server that answers each handshake only when `release` is called, so a test can
 * start meshlet's drain while the handshake is in flight. `closeCodes`: close codes it received.
 */
async function startSlowWs(): Promise<{
  endpoint: string;
  waiting(): number;
  release(): void;
  closeCodes: number[];
  close(): Promise<void>;
}> {
  const server: Server = createServer((_req, res) => res.end('plain'));
  const wss = new WebSocketServer({ noServer: true });
  const held: Array<() => void> = [];
  const closeCodes: number[] = [];
  server.on('upgrade', (req, socket, head) => {
    held.push(() =>
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
        ws.on('close', (code) => closeCodes.push(code));
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    waiting: () => held.length,
    release: () => {
      for (const answer of held.splice(0)) answer();
    },
    closeCodes,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('a tunnel handshake in flight when the drain starts', () => {
  it('opens, then gets close 1001 both ways at once: the exit does not wait for drainTimeout', async () => {
    const upstream = await startSlowWs();
    const mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { chat: [upstream.endpoint] } },
      upstreams: { chat: { timeouts: { perTry: '10s' } } },
      shutdown: { drainDelay: 0, drainTimeout: '8s' },
      listeners: { adminGrpc: { enabled: false } },
    });
    try {
      const port = Number(new URL(mesh.outbound).port);
      const ws = new WebSocket(`ws://127.0.0.1:${port}/late`, { headers: { host: 'chat' } });
      ws.on('error', () => undefined);
      const code = closed(ws);
      await until(() => upstream.waiting() === 1, 'the handshake at the upstream');
      const t0 = performance.now();
      const stopped = mesh.daemon.shutdown('test');
      // The drain has asked the live tunnels (none yet) to go away; now the 101 arrives.
      await new Promise((r) => setTimeout(r, 100));
      upstream.release();
      expect(await code).toBe(1001);
      await stopped;
      expect(performance.now() - t0).toBeLessThan(3000);
      await until(() => upstream.closeCodes.length === 1, 'the upstream hearing the close');
      expect(upstream.closeCodes).toEqual([1001]);
      const lineOf = (): Record<string, unknown> | undefined =>
        mesh.logs.find((l) => l.msg === 'access' && l.path === '/late');
      await until(() => lineOf() !== undefined, 'the tunnel access line');
      expect(lineOf()).toMatchObject({ kind: 'websocket', status: 101, closeReason: 'drain' });
    } finally {
      await mesh.close();
      await upstream.close();
    }
  }, 20_000);
});
