// On shutdown a live WebSocket ends as soon as both peers answered meshlet's close 1001, not at the 1 s cut that follows.
import { describe, expect, it } from 'vitest';
import { startMeshlet } from '../helpers/meshlet.ts';
import { until } from './raw-tunnel-helpers.ts';
import { closed, openWs, startWsEcho } from './ws-helpers.ts';

describe('a WebSocket closed by the drain', () => {
  it('ends when the client and the upstream answer the close: the exit does not wait for the 1 s cut', async () => {
    const echo = await startWsEcho();
    const mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { chat: [echo.endpoint] } },
      shutdown: { drainDelay: 0, drainTimeout: '8s' },
      listeners: { adminGrpc: { enabled: false } },
    });
    try {
      const port = Number(new URL(mesh.outbound).port);
      const ws = await openWs(`ws://127.0.0.1:${port}/prompt`, { host: 'chat' });
      const back = new Promise((r) => ws.once('message', r));
      ws.send('hi');
      await back;
      const code = closed(ws);
      const t0 = performance.now();
      await mesh.daemon.shutdown('test');
      // Before: both sockets were paused when the close frames went out, so the peers' answers and
      // FINs were never read and the tunnel lasted until meshlet destroyed it 1 s later.
      expect(performance.now() - t0).toBeLessThan(600);
      expect(await code).toBe(1001);
      await until(() => echo.closeCodes.length === 1, 'the upstream hearing the close');
      expect(echo.closeCodes).toEqual([1001]);
      const lineOf = (): Record<string, unknown> | undefined =>
        mesh.logs.find((l) => l.msg === 'access' && l.path === '/prompt');
      await until(() => lineOf() !== undefined, 'the tunnel access line');
      // Relayed bytes only: "hi" masked from the client (8), unmasked back (4); neither peer's
      // answer to meshlet's own close frame is relayed or counted.
      expect(lineOf()).toMatchObject({
        kind: 'websocket',
        status: 101,
        closeReason: 'drain',
        bytesReceived: 8,
        bytesSent: 4,
      });
    } finally {
      await mesh.close();
      await echo.close();
    }
  }, 20_000);
});
