// listeners.*.maxConnections: every listener closes connections beyond its cap at accept (HTTP/1.1, h2c and tunnels count alike), counts them and warns once per 10 s.
import { connect as h2Connect } from 'node:http2';
import { createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { rawRequest } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { openWs, startWsEcho, type WsEcho } from '../tunnel/ws-helpers.ts';
import { fateOf, metric, openConnection, requestOn, waitFor } from './conn-helpers.ts';

const DROP_WARNING = 'listener connection dropped: maxConnections reached';

const portOf = (url: string) => Number(new URL(url).port);
const open = (m: InProcessMeshlet, listener: string) => () =>
  metric(m.admin, 'meshlet_listener_connections', { listener });
const dropped = (m: InProcessMeshlet, listener: string) => () =>
  metric(m.admin, 'meshlet_listener_connections_dropped_total', { listener });
const dropWarnings = (m: InProcessMeshlet, listener: string) =>
  m.logs.filter((l) => l.msg === DROP_WARNING && l.listener === listener);

/** One HTTP/1.1 request on an open socket; resolves with the reply's status line. */
const statusOn = async (socket: Socket, host: string) => {
  const reply = await requestOn(socket, host);
  return reply.slice(0, reply.indexOf('\r\n'));
};

describe('listeners.outbound.maxConnections', () => {
  let upstream: TestUpstream;
  let chat: WsEcho;
  let m: InProcessMeshlet;
  beforeAll(async () => {
    upstream = await startUpstream();
    chat = await startWsEcho();
    m = await startMeshlet({
      listeners: { outbound: { port: 0, maxConnections: 3 } },
      registry: { endpoints: { users: [upstream.endpoint], chat: [chat.endpoint] } },
      routes: [{ match: { pathPrefix: '/chat/' }, upstream: 'chat', stripPrefix: true }],
    });
  });
  afterAll(async () => {
    await m?.close();
    await upstream?.close();
    await chat?.close();
  });

  it('counts an HTTP/1.1 connection, an h2c session and a WebSocket tunnel, drops the next ones, warns once, and serves again once one closes', async () => {
    const port = portOf(m.outbound);
    const h1 = await openConnection(port);
    expect(await statusOn(h1, 'users')).toBe('HTTP/1.1 200 OK');
    const h2 = h2Connect(m.outbound);
    h2.on('error', () => undefined);
    const h2Status = await new Promise<number>((resolve, reject) => {
      const stream = h2.request({ ':path': '/', ':authority': 'users' });
      stream.on('response', (headers) => resolve(Number(headers[':status'])));
      stream.on('error', reject);
      stream.resume();
      stream.end();
    });
    expect(h2Status).toBe(200);
    const ws = await openWs(`ws://127.0.0.1:${port}/chat/room`);
    await waitFor(open(m, 'outbound'), 3, 'open outbound connections');

    expect(await fateOf(port)).toBe('dropped');
    expect(await fateOf(port)).toBe('dropped');
    await waitFor(dropped(m, 'outbound'), 2, 'dropped outbound connections');
    // Everything open before the cap was reached still works.
    expect(await statusOn(h1, 'users')).toBe('HTTP/1.1 200 OK');
    const echoed = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
    ws.send('still here');
    expect(await echoed).toBe('still here');
    // Two drops within 10 s: one warning, naming the listener and its cap.
    const warnings = dropWarnings(m, 'outbound');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 'warn', listener: 'outbound', maxConnections: 3, port });

    ws.terminate();
    await waitFor(open(m, 'outbound'), 2, 'open outbound connections after the tunnel closed');
    const reply = await rawRequest(port, 'GET / HTTP/1.1\r\nhost: users\r\nconnection: close\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    h1.destroy();
    h2.destroy();
    await waitFor(open(m, 'outbound'), 0, 'open outbound connections at the end');
  });
});

describe('maxConnections unset (the default)', () => {
  it('caps nothing: 60 idle connections all stay open and are counted', async () => {
    const m = await startMeshlet({ registry: { endpoints: {} } });
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 60; i++) sockets.push(await openConnection(portOf(m.outbound)));
      await waitFor(open(m, 'outbound'), 60, 'open outbound connections');
      expect(await fateOf(portOf(m.outbound), 300)).toBe('open');
      expect(await dropped(m, 'outbound')()).toBe(0);
    } finally {
      for (const s of sockets) s.destroy();
      await m.close();
    }
  });
});

/** A port that was free a moment ago (per-upstream listener ports cannot be 0). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('per-upstream listeners share listeners.outbound.maxConnections', () => {
  it('drops past the cap on the per-upstream listener, counted under listener="upstream"', async () => {
    const upstream = await startUpstream();
    const port = await freePort();
    const m = await startMeshlet({
      listeners: { outbound: { port: 0, maxConnections: 1 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      upstreams: { users: { port } },
    });
    try {
      const held = await openConnection(port);
      expect(await statusOn(held, 'anything')).toBe('HTTP/1.1 200 OK');
      expect(await fateOf(port)).toBe('dropped');
      await waitFor(dropped(m, 'upstream'), 1, 'dropped per-upstream connections');
      expect(await dropped(m, 'outbound')()).toBe(0);
      held.destroy();
    } finally {
      await m.close();
      await upstream.close();
    }
  });
});

describe('listeners.gateway.maxConnections', () => {
  it('drops past the cap before any HTTP byte, counted under listener="gateway"', async () => {
    const upstream = await startUpstream();
    const m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0, maxConnections: 2 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      gateway: { routes: [{ match: { pathPrefix: '/pub/' }, upstream: 'users' }] },
    });
    const port = m.daemon.addresses().gateway!.port;
    const held: Socket[] = [];
    try {
      held.push(await openConnection(port), await openConnection(port));
      await waitFor(open(m, 'gateway'), 2, 'open gateway connections');
      expect(await fateOf(port)).toBe('dropped');
      await waitFor(dropped(m, 'gateway'), 1, 'dropped gateway connections');
      expect(dropWarnings(m, 'gateway')).toHaveLength(1);
      held.pop()!.destroy();
      await waitFor(open(m, 'gateway'), 1, 'open gateway connections after one closed');
      const reply = await rawRequest(port, 'GET /pub/x HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n\r\n');
      expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      for (const s of held) s.destroy();
      await m.close();
      await upstream.close();
    }
  });
});

describe('listeners.inbound.maxConnections', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await makePki();
  });

  it('drops past the cap before the TLS handshake, counted under listener="inbound"', async () => {
    const app = await startUpstream();
    const m = await startMeshlet({
      service: { name: 'orders', port: app.port },
      listeners: { inbound: { address: '127.0.0.1', port: 0, maxConnections: 1 } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
    const port = m.daemon.addresses().inbound!.port;
    let held: Socket | undefined;
    try {
      held = await openConnection(port);
      await waitFor(open(m, 'inbound'), 1, 'open inbound connections');
      expect(await fateOf(port)).toBe('dropped');
      await waitFor(dropped(m, 'inbound'), 1, 'dropped inbound connections');
      expect(dropWarnings(m, 'inbound')).toHaveLength(1);
      // The TLS handshake is not even started on a dropped connection: no handshake failure counted.
      expect(
        await metric(m.admin, 'meshlet_tls_handshakes_total', { direction: 'inbound', result: 'failed' }),
      ).toBe(0);
    } finally {
      held?.destroy();
      await m.close();
      await app.close();
    }
  });
});
