// A tunnel relays an upstream's half-close: the client sees the end of the stream and can still send.
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';

describe('tunnel half-close', () => {
  let upstream: Server;
  const upstreamSockets: Socket[] = [];
  let upstreamGot = '';
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    // Greets, half-closes at once, and keeps reading until the other side ends too.
    upstream = createServer({ allowHalfOpen: true }, (s) => {
      upstreamSockets.push(s);
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => (upstreamGot += d.toString('latin1')));
      s.end('bye-from-upstream');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { app: [`127.0.0.1:${(upstream.address() as AddressInfo).port}`] },
      },
    });
  });
  afterAll(async () => {
    await mesh.close();
    for (const s of upstreamSockets) s.destroy();
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  it('an upstream that half-closes a CONNECT tunnel still receives what the client sends after', async () => {
    const c = connect({ port: Number(new URL(mesh.outbound).port), host: '127.0.0.1', allowHalfOpen: true });
    c.on('error', () => undefined);
    let got = '';
    c.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const ended = new Promise<void>((r) => c.once('end', r));
    c.write('CONNECT app:443 HTTP/1.1\r\nHost: app:443\r\n\r\n');
    await ended;
    expect(got).toBe('HTTP/1.1 200 Connection established\r\n\r\nbye-from-upstream');
    c.end('late-data-from-client');
    await new Promise((r) => c.once('close', r));
    const t0 = performance.now();
    while (upstreamGot === '' && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
    expect(upstreamGot).toBe('late-data-from-client');
  });
});
