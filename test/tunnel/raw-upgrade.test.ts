// A non-WebSocket upgrade (Upgrade: tcp) is a raw byte tunnel: labelled kind="upgrade", never parsed as WebSocket frames, ended at once on shutdown.
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';

/** Bytes that begin like a WebSocket frame header (FIN + text, a 126-byte extended length) and never finish one. */
const FRAME_LOOKALIKE = Buffer.from([0x81, 0x7e, 0xff, 0xff, 0x41, 0x42]);

describe('raw upgrade tunnels (Upgrade: tcp)', () => {
  let app: Server;
  const appSockets: Duplex[] = [];
  let appGot = Buffer.alloc(0);
  let mesh: InProcessMeshlet;
  let client: Socket;
  let clientGot = Buffer.alloc(0);
  const clientEnded = { at: 0 };

  beforeAll(async () => {
    app = createServer((_req, res) => res.end('plain'));
    app.on('upgrade', (_req, socket: Duplex) => {
      appSockets.push(socket);
      socket.on('error', () => undefined);
      socket.on('data', (d: Buffer) => (appGot = Buffer.concat([appGot, d])));
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n');
      socket.write(FRAME_LOOKALIKE);
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { attach: [`127.0.0.1:${(app.address() as AddressInfo).port}`] },
      },
      upstreams: { attach: { upgrades: ['tcp'] } },
      shutdown: { drainDelay: '0s', drainTimeout: '10s' },
    });
  });
  afterAll(async () => {
    client?.destroy();
    for (const s of appSockets) s.destroy();
    app.closeAllConnections();
    await new Promise<void>((r) => app.close(() => r()));
  });

  it('opens, relays bytes that look like frames untouched, and counts as kind="upgrade"', async () => {
    client = connect(Number(new URL(mesh.outbound).port), '127.0.0.1');
    client.on('error', () => undefined);
    client.on('data', (d: Buffer) => (clientGot = Buffer.concat([clientGot, d])));
    client.on('end', () => (clientEnded.at = performance.now()));
    client.write('POST /attach HTTP/1.1\r\nHost: attach\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n');
    const t0 = performance.now();
    while (appGot.length < FRAME_LOOKALIKE.length && performance.now() - t0 < 3000) {
      if (clientGot.includes('\r\n\r\n') && appGot.length === 0) client.write(FRAME_LOOKALIKE);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(clientGot.toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
    expect(clientGot.subarray(clientGot.indexOf('\r\n\r\n') + 4)).toEqual(FRAME_LOOKALIKE);
    expect(appGot).toEqual(FRAME_LOOKALIKE);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(
      /^meshlet_tunnels_active\{direction="outbound",upstream="attach",kind="upgrade"\} 1$/m,
    );
    expect(metrics).not.toMatch(/^meshlet_tunnels_active\{[^}]*kind="websocket"[^}]*\} [1-9]/m);
  });

  it('on shutdown it ends at once, without waiting for a frame boundary or writing a close frame into the stream', async () => {
    const before = { client: clientGot.length, app: appGot.length };
    const started = performance.now();
    await mesh.close();
    // drainTimeout is 10 s: a tunnel waiting for a WebSocket frame boundary would hold shutdown that long.
    expect(clientEnded.at).toBeGreaterThan(0);
    expect(clientEnded.at - started).toBeLessThan(5000);
    expect(clientGot.length).toBe(before.client);
    expect(appGot.length).toBe(before.app);
  });
});
