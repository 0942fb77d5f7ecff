// Tunnel handshakes that go wrong: a client leaving mid-handshake, a body on the upgrade, a bodiless
// POST upgrade, a 101 without Upgrade, and a local app that never answers or outlives its caller.
import { createServer, type Server } from 'node:http';
import {
  type AddressInfo,
  connect,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { makePki, tlsFilesConfig, peerEndpoint } from '../tls/tls-helpers.ts';

const WS_HEADERS =
  'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
const ACCEPT_101 =
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n';

/** A raw TCP upstream: `onRequest` gets each connection with its first bytes (the request head). */
interface RawUpstream {
  readonly server: NetServer;
  readonly port: number;
  /** Every accepted connection, with the time it closed (ms since it was accepted), if it has. */
  readonly conns: { socket: Socket; closedAfter: number | null }[];
  close(): Promise<void>;
}

async function rawUpstream(onRequest: (socket: Socket, head: string) => void): Promise<RawUpstream> {
  const conns: RawUpstream['conns'] = [];
  const server = createNetServer((socket) => {
    const entry = { socket, closedAfter: null as number | null };
    const t0 = performance.now();
    conns.push(entry);
    socket.on('error', () => undefined);
    socket.on('close', () => (entry.closedAfter = performance.now() - t0));
    socket.once('data', (d: Buffer) => onRequest(socket, d.toString('latin1')));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    conns,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const t0 = performance.now();
  while (!check() && performance.now() - t0 < ms) await sleep(10);
}

async function metricsOf(mesh: InProcessMeshlet): Promise<string> {
  return (await request(`${mesh.admin}/metrics`)).body.text();
}

/** Opens a raw connection, sends `text`, and destroys it after `leaveAfterMs`. */
async function sendAndLeave(port: number, text: string, leaveAfterMs: number): Promise<void> {
  const c = connect(port, '127.0.0.1');
  c.on('error', () => undefined);
  c.write(text);
  await sleep(leaveAfterMs);
  c.destroy();
}

describe('outbound tunnel handshakes that go wrong', () => {
  let slow: RawUpstream;
  let noUpgrade: RawUpstream;
  let counting: RawUpstream;
  let docker: Server;
  let dockerSeen: { headers: Record<string, unknown>; stream: Buffer } | undefined;
  const dockerSockets: Duplex[] = [];
  let mesh: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    // Answers 101 only 400 ms after the request.
    slow = await rawUpstream((s) =>
      setTimeout(() => {
        if (!s.destroyed) s.write(ACCEPT_101);
      }, 400),
    );
    noUpgrade = await rawUpstream((s) => s.write('HTTP/1.1 101 Switching Protocols\r\n\r\nRAWBYTES'));
    counting = await rawUpstream((s) => s.write(ACCEPT_101));
    docker = createServer((_req, res) => res.end('plain'));
    docker.on('upgrade', (req, socket, head: Buffer) => {
      dockerSockets.push(socket);
      const seen = { headers: req.headers, stream: head };
      dockerSeen = seen;
      socket.on('data', (d: Buffer) => (seen.stream = Buffer.concat([seen.stream, d])));
      socket.write('HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n');
    });
    await new Promise<void>((r) => docker.listen(0, '127.0.0.1', r));
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          slow: [`127.0.0.1:${slow.port}`],
          noupgrade: [`127.0.0.1:${noUpgrade.port}`],
          counting: [`127.0.0.1:${counting.port}`],
          docker: [`127.0.0.1:${(docker.address() as AddressInfo).port}`],
        },
      },
      upstreams: {
        // One failure would eject the endpoint: the tests see whether it was charged.
        slow: { outlierDetection: { consecutiveGatewayFailure: 1 } },
        docker: { upgrades: ['tcp'] },
      },
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh.close();
    await slow.close();
    await noUpgrade.close();
    await counting.close();
    // Upgraded sockets are no longer node:http's to close (and it leaves them half-open).
    for (const s of dockerSockets) s.destroy();
    docker.closeAllConnections();
    await new Promise<void>((r) => docker.close(() => r()));
  });

  it('a client that leaves before the 101: the upstream connection is dropped, no tunnel, counted failed, endpoint not charged', async () => {
    for (let i = 0; i < 3; i++)
      await sendAndLeave(port, `GET /ws HTTP/1.1\r\nHost: slow\r\n${WS_HEADERS}\r\n`, 100);
    await until(() => slow.conns.length === 3 && slow.conns.every((c) => c.closedAfter !== null));
    // Closed by meshlet when the client left, well before the upstream's 101 at 400 ms.
    for (const c of slow.conns) expect(c.closedAfter).toBeLessThan(350);
    await sleep(500); // past the upstream's 101
    const metrics = await metricsOf(mesh);
    expect(metrics).not.toMatch(/^meshlet_tunnels_active\{[^}]*upstream="slow"[^}]*\} [1-9]/m);
    expect(metrics).not.toMatch(/^meshlet_tunnels_total\{[^}]*upstream="slow"[^}]*result="established"\}/m);
    expect(metrics).toMatch(
      /^meshlet_tunnels_total\{direction="outbound",upstream="slow",kind="websocket",result="failed"\} 3$/m,
    );
    const upstreams = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
      upstreams: Record<string, { endpoints: { state: string }[] }>;
    };
    expect(upstreams.upstreams.slow!.endpoints.map((e) => e.state)).toEqual(['healthy']);
    const access = mesh.logs.filter((l) => l.upstream === 'slow' && l.status !== undefined);
    expect(access.map((l) => l.status)).toEqual([499, 499, 499]);
  });

  it('an Upgrade request with a body gets 400 bad_request before any upstream is dialled', async () => {
    for (const framing of [
      'Content-Length: 5\r\n\r\nHELLO',
      'Transfer-Encoding: chunked\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n',
    ]) {
      const reply = parseReply(
        await rawRequest(port, `GET /ws HTTP/1.1\r\nHost: counting\r\n${WS_HEADERS}${framing}`),
      );
      expect(reply.status).toBe(400);
      expect(reply.headers['x-meshlet-error']).toBe('bad_request');
      expect(reply.body).toContain('an Upgrade request with a body is not supported');
    }
    expect(counting.conns).toHaveLength(0);
  });

  it('a bodiless POST upgrade (Docker attach, Upgrade: tcp) reaches the upstream without chunked framing', async () => {
    const c = connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    let got = '';
    c.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n') && !got.includes('stdin')) {
        got += '(stdin)';
        c.write('stdin-bytes');
      }
    });
    c.write(
      'POST /containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n',
    );
    await until(() => dockerSeen?.stream.toString('latin1').includes('stdin-bytes') === true);
    c.destroy();
    expect(got).toMatch(/^HTTP\/1\.1 101 UPGRADED\r\n/);
    expect(dockerSeen?.headers['transfer-encoding']).toBeUndefined();
    expect(dockerSeen?.headers['content-length']).toBeUndefined();
    expect(dockerSeen?.stream.toString('latin1')).toBe('stdin-bytes');
  });

  it('an upstream 101 without an Upgrade header → 502 upstream_unreachable, counted failed', async () => {
    const reply = parseReply(
      await rawRequest(port, `GET /ws HTTP/1.1\r\nHost: noupgrade\r\n${WS_HEADERS}\r\n`),
    );
    expect(reply.status).toBe(502);
    expect(reply.headers['x-meshlet-error']).toBe('upstream_unreachable');
    expect(reply.body).not.toContain('RAWBYTES');
    const metrics = await metricsOf(mesh);
    expect(metrics).toMatch(
      /^meshlet_tunnels_total\{direction="outbound",upstream="noupgrade",kind="websocket",result="failed"\} 1$/m,
    );
    expect(metrics).not.toMatch(/^meshlet_tunnels_total\{[^}]*upstream="noupgrade"[^}]*result="refused"\}/m);
  });
});

describe('inbound tunnel handshakes that go wrong (two meshlets over mTLS)', () => {
  let app: RawUpstream;
  let a: InProcessMeshlet;
  let b: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    const pki = await makePki();
    // The local app: /never never answers, /late answers 101 after 600 ms, /bad answers a 101 without Upgrade.
    app = await rawUpstream((s, head) => {
      if (head.startsWith('GET /late ')) {
        setTimeout(() => {
          if (!s.destroyed) s.write(ACCEPT_101);
        }, 600);
      } else if (head.startsWith('GET /bad ')) s.write('HTTP/1.1 101 Switching Protocols\r\n\r\n');
    });
    b = await startMeshlet({
      service: { name: 'chat', port: app.port },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'], appTimeout: '400ms' } },
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
      upstreams: { chat: { timeouts: { request: '3s' } } },
    });
    port = Number(new URL(a.outbound).port);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await app?.close();
  });

  it('a local app that never answers the upgrade: 504 after appTimeout and the app connection closed', async () => {
    const before = app.conns.length;
    const t0 = performance.now();
    const reply = parseReply(
      await rawRequest(port, `GET /never HTTP/1.1\r\nHost: chat\r\n${WS_HEADERS}\r\n`),
    );
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(reply.status).toBe(504);
    expect(reply.headers['x-meshlet-error']).toBe('upstream_timeout');
    await until(() => (app.conns[before]?.closedAfter ?? null) !== null);
    expect(app.conns[before]?.closedAfter).not.toBeNull();
  });

  it('a caller that leaves before the app’s 101: the app connection closes and no inbound tunnel is counted', async () => {
    const before = app.conns.length;
    await sendAndLeave(port, `GET /late HTTP/1.1\r\nHost: chat\r\n${WS_HEADERS}\r\n`, 150);
    await until(() => (app.conns[before]?.closedAfter ?? null) !== null);
    expect(app.conns[before]?.closedAfter).toBeLessThan(550);
    await sleep(300); // past the app's 101
    const metrics = await metricsOf(b);
    expect(metrics).not.toMatch(/^meshlet_tunnels_total\{direction="inbound"[^}]*result="established"\}/m);
    expect(metrics).not.toMatch(/^meshlet_tunnels_active\{direction="inbound"[^}]*\} [1-9]/m);
  });

  it('a local app answering 101 without an Upgrade header → 502 upstream_unreachable', async () => {
    const reply = parseReply(await rawRequest(port, `GET /bad HTTP/1.1\r\nHost: chat\r\n${WS_HEADERS}\r\n`));
    expect(reply.status).toBe(502);
    expect(reply.headers['x-meshlet-error']).toBe('upstream_unreachable');
    expect(reply.body).toContain('101 without an Upgrade header');
  });
});
