// One access line per tunnel, on the outbound and the inbound (mTLS) listener: refusals at once, established tunnels at their end.
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { closedPort } from '../helpers/upstream-server.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { plain, rawClient, startRawApp, UPGRADE_TCP, until } from './raw-tunnel-helpers.ts';
import { closed, openWs, startWsEcho, type WsEcho } from './ws-helpers.ts';

type Line = Record<string, unknown>;

/** The access lines of `direction` whose path is `path`. */
const linesOf = (logs: Line[], direction: string, path: string): Line[] =>
  logs.filter((l) => l.msg === 'access' && l.direction === direction && l.path === path);

/** Waits for `path`'s line, then a little more, and returns the only one (asserting there is one). */
async function onlyLine(logs: Line[], direction: string, path: string): Promise<Line> {
  await until(() => linesOf(logs, direction, path).length > 0, `the ${direction} line of ${path}`);
  await new Promise((r) => setTimeout(r, 100));
  const lines = linesOf(logs, direction, path);
  expect(lines, `${direction} ${path}`).toHaveLength(1);
  expect(typeof lines[0]!.durationMs).toBe('number');
  return lines[0]!;
}

describe('tunnel access lines on the outbound listener', () => {
  let echo: WsEcho;
  let refusing: WsEcho;
  let app: { port: number; close(): Promise<void> };
  let deadPort: number;
  let mesh: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    echo = await startWsEcho();
    refusing = await startWsEcho(403);
    app = await startRawApp();
    deadPort = await closedPort();
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          echo: [echo.endpoint],
          refusing: [refusing.endpoint],
          dead: [`127.0.0.1:${deadPort}`],
          raw: [`127.0.0.1:${app.port}`],
          held: [`127.0.0.1:${app.port}`],
        },
      },
      upstreams: {
        raw: { upgrades: ['tcp'] },
        held: { upgrades: ['tcp'], limits: { maxConcurrent: 1 }, timeouts: { perTry: '10s' } },
      },
      routes: [
        { match: { pathPrefix: '/ws/' }, upstream: 'echo' },
        { match: { pathPrefix: '/refuse' }, upstream: 'refusing' },
        { match: { pathPrefix: '/dead/' }, upstream: 'dead' },
        { match: { pathPrefix: '/raw/' }, upstream: 'raw' },
        { match: { pathPrefix: '/hold' }, upstream: 'held' },
      ],
      listeners: { adminGrpc: { enabled: false } },
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh?.close();
    await echo?.close();
    await refusing?.close();
    await app?.close();
  });

  it('refusals (no route, bad request, a limit) and a failed dial are logged at once with their error', async () => {
    const noRoute = plain(
      port,
      `CONNECT 127.0.0.1:${deadPort} HTTP/1.1\r\nHost: 127.0.0.1:${deadPort}\r\n\r\n`,
    );
    await noRoute.ended;
    expect(noRoute.text()).toMatch(/^HTTP\/1\.1 404/);
    expect(await onlyLine(mesh.logs, 'outbound', `127.0.0.1:${deadPort}`)).toMatchObject({
      kind: 'connect',
      method: 'CONNECT',
      status: 404,
      error: 'no_route',
    });

    const bad = plain(
      port,
      `GET /ws/bad HTTP/1.1\r\nHost: echo\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`,
    );
    await bad.ended;
    expect(await onlyLine(mesh.logs, 'outbound', '/ws/bad')).toMatchObject({
      kind: 'upgrade',
      upstream: 'echo',
      status: 400,
      error: 'bad_request',
    });

    // maxConcurrent 1: one handshake held by the endpoint, the next one is refused 503 overloaded.
    const holding = plain(port, `GET /hold/1 HTTP/1.1\r\nHost: held\r\n${UPGRADE_TCP}`);
    await new Promise((r) => setTimeout(r, 200));
    const over = plain(port, `GET /hold/2 HTTP/1.1\r\nHost: held\r\n${UPGRADE_TCP}`);
    await over.ended;
    expect(over.text()).toMatch(/^HTTP\/1\.1 503/);
    expect(await onlyLine(mesh.logs, 'outbound', '/hold/2')).toMatchObject({
      kind: 'upgrade',
      upstream: 'held',
      status: 503,
      error: 'overloaded',
    });
    // The client of the held handshake leaves: 499, no error (nobody answered it).
    holding.socket.destroy();
    const left = await onlyLine(mesh.logs, 'outbound', '/hold/1');
    expect(left).toMatchObject({ kind: 'upgrade', upstream: 'held', status: 499 });
    expect(left).not.toHaveProperty('error');

    const dead = await openWs(`ws://127.0.0.1:${port}/dead/x`).catch((e: { status: number }) => e);
    expect((dead as { status: number }).status).toBe(502);
    expect(await onlyLine(mesh.logs, 'outbound', '/dead/x')).toMatchObject({
      kind: 'websocket',
      upstream: 'dead',
      endpoint: `127.0.0.1:${deadPort}`,
      status: 502,
      error: 'upstream_unreachable',
    });
    expect(linesOf(mesh.logs, 'outbound', '/dead/x')[0]!.attempts).toBeGreaterThanOrEqual(1);
  });

  it("the endpoint's refusal of the upgrade is logged with its status", async () => {
    const err = (await openWs(`ws://127.0.0.1:${port}/refuse/x`).catch((e: unknown) => e)) as {
      status: number;
    };
    expect(err.status).toBe(403);
    const line = await onlyLine(mesh.logs, 'outbound', '/refuse/x');
    expect(line).toMatchObject({
      kind: 'websocket',
      upstream: 'refusing',
      endpoint: refusing.endpoint,
      status: 403,
    });
    expect(line).not.toHaveProperty('error');
    expect(line).not.toHaveProperty('closeReason');
  });

  it('an established WebSocket is logged once, when it closes: 101, bytes each way, closeReason closed', async () => {
    const ws = await openWs(`ws://127.0.0.1:${port}/ws/room`);
    const got = new Promise<string>((r) => ws.once('message', (d: Buffer) => r(d.toString())));
    ws.send('hello through meshlet');
    expect(await got).toBe('hello through meshlet');
    await new Promise((r) => setTimeout(r, 100));
    expect(linesOf(mesh.logs, 'outbound', '/ws/room')).toHaveLength(0);
    ws.close(1000);
    await closed(ws);
    const line = await onlyLine(mesh.logs, 'outbound', '/ws/room');
    expect(line).toMatchObject({
      kind: 'websocket',
      upstream: 'echo',
      endpoint: echo.endpoint,
      status: 101,
      attempts: 1,
      closeReason: 'closed',
    });
    expect(line.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(line.bytesReceived as number).toBeGreaterThan(20);
    expect(line.bytesSent as number).toBeGreaterThan(20);
    expect(line).not.toHaveProperty('error');
  });

  it('a CONNECT tunnel is logged 200 at its end; one the endpoint resets ends with closeReason error', async () => {
    const tunnel = plain(port, 'CONNECT raw:443 HTTP/1.1\r\nHost: raw:443\r\n\r\n');
    await until(() => tunnel.text().startsWith('HTTP/1.1 200'), 'the CONNECT 200');
    tunnel.socket.write('ping');
    await until(() => tunnel.text().endsWith('ping'), 'the echo');
    tunnel.socket.end();
    await tunnel.ended;
    const line = await onlyLine(mesh.logs, 'outbound', 'raw:443');
    expect(line).toMatchObject({
      kind: 'connect',
      upstream: 'raw',
      status: 200,
      closeReason: 'closed',
      bytesReceived: 4,
    });

    const cut = plain(port, `GET /raw/cut HTTP/1.1\r\nHost: raw\r\n${UPGRADE_TCP}`);
    await until(() => cut.text().startsWith('HTTP/1.1 101'), 'the 101');
    cut.socket.write('reset');
    await cut.ended;
    expect(await onlyLine(mesh.logs, 'outbound', '/raw/cut')).toMatchObject({
      kind: 'upgrade',
      upstream: 'raw',
      status: 101,
      closeReason: 'error',
    });
  });
});

describe('tunnel access lines at shutdown and with the access log off', () => {
  it('tunnels closed by the drain are logged with closeReason drain (WebSocket 1001, CONNECT ended)', async () => {
    const echo = await startWsEcho();
    const app = await startRawApp();
    const mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { echo: [echo.endpoint], raw: [`127.0.0.1:${app.port}`] } },
      shutdown: { drainDelay: 0, drainTimeout: '2s' },
      listeners: { adminGrpc: { enabled: false } },
    });
    try {
      const port = Number(new URL(mesh.outbound).port);
      const ws = await openWs(`ws://127.0.0.1:${port}/chat`, { host: 'echo' });
      const tunnel = plain(port, 'CONNECT raw:443 HTTP/1.1\r\nHost: raw:443\r\n\r\n');
      await until(() => tunnel.text().startsWith('HTTP/1.1 200'), 'the CONNECT 200');
      const code = closed(ws);
      await mesh.daemon.shutdown('test');
      expect(await code).toBe(1001);
      expect(await onlyLine(mesh.logs, 'outbound', '/chat')).toMatchObject({
        kind: 'websocket',
        status: 101,
        closeReason: 'drain',
      });
      expect(await onlyLine(mesh.logs, 'outbound', 'raw:443')).toMatchObject({
        kind: 'connect',
        status: 200,
        closeReason: 'drain',
      });
    } finally {
      await mesh.close();
      await echo.close();
      await app.close();
    }
  });

  it('with accessLog off, a refusal is still logged and an established tunnel is not', async () => {
    const echo = await startWsEcho();
    const mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { echo: [echo.endpoint] } },
      accessLog: { enabled: false },
      listeners: { adminGrpc: { enabled: false } },
    });
    try {
      const port = Number(new URL(mesh.outbound).port);
      const ws = await openWs(`ws://127.0.0.1:${port}/quiet`, { host: 'echo' });
      ws.close(1000);
      await closed(ws);
      const refused = plain(port, 'CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n');
      await refused.ended;
      expect((await onlyLine(mesh.logs, 'outbound', '127.0.0.1:9')).error).toBe('no_route');
      expect(linesOf(mesh.logs, 'outbound', '/quiet')).toHaveLength(0);
    } finally {
      await mesh.close();
      await echo.close();
    }
  });
});

describe('tunnel access lines on the inbound (mTLS) listener', () => {
  let pki: TestPki;
  let app: { port: number; close(): Promise<void> };
  let chat: InProcessMeshlet;
  let guarded: InProcessMeshlet;
  let gone: InProcessMeshlet;
  let a: InProcessMeshlet;
  let port: number;
  const CALLER = 'spiffe://mesh.test/svc/web';

  beforeAll(async () => {
    pki = await makePki();
    app = await startRawApp();
    const inboundPeer = async (name: string, appPort: number, allow: string[]) =>
      startMeshlet({
        service: { name, port: appPort },
        listeners: {
          inbound: { address: '127.0.0.1', port: 0, allow, appTimeout: '5s' },
          adminGrpc: { enabled: false },
        },
        tls: await tlsFilesConfig(pki, name),
        shutdown: { drainDelay: 0, drainTimeout: '1s' },
      });
    chat = await inboundPeer('chat', app.port, ['web']);
    guarded = await inboundPeer('guarded', app.port, ['nobody']);
    gone = await inboundPeer('gone', await closedPort(), ['web']);
    a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: {
        type: 'static',
        endpoints: {
          chat: [peerEndpoint(chat)],
          guarded: [peerEndpoint(guarded)],
          gone: [peerEndpoint(gone)],
        },
      },
      upstreams: {
        chat: { upgrades: ['tcp'], timeouts: { perTry: '10s', request: '10s' } },
        guarded: { upgrades: ['tcp'] },
        gone: { upgrades: ['tcp'] },
      },
      listeners: { adminGrpc: { enabled: false } },
    });
    port = Number(new URL(a.outbound).port);
  });
  afterAll(async () => {
    await a?.close();
    await chat?.close();
    await guarded?.close();
    await gone?.close();
    await app?.close();
  });

  it('refused by authorization (403 forbidden) and by a malformed request (400) are logged at once', async () => {
    const refused = plain(port, `GET /in/forbidden HTTP/1.1\r\nHost: guarded\r\n${UPGRADE_TCP}`);
    await refused.ended;
    expect(refused.text()).toMatch(/^HTTP\/1\.1 403/);
    expect(await onlyLine(guarded.logs, 'inbound', '/in/forbidden')).toMatchObject({
      kind: 'upgrade',
      caller: CALLER,
      upstream: 'guarded',
      status: 403,
      error: 'forbidden',
    });

    // meshlet A refuses two Host headers itself: speak to B's inbound listener directly, as web.
    const leaf = await pki.issue('web');
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: chat.daemon.addresses().inbound!.port,
      cert: leaf.certPem,
      key: leaf.keyPem,
      ca: pki.ca.certPem,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    const bad = rawClient(socket, `GET /in/twohosts HTTP/1.1\r\nHost: chat\r\nHost: other\r\n${UPGRADE_TCP}`);
    await bad.ended;
    expect(bad.text()).toMatch(/^HTTP\/1\.1 400/);
    expect(await onlyLine(chat.logs, 'inbound', '/in/twohosts')).toMatchObject({
      kind: 'upgrade',
      caller: CALLER,
      status: 400,
      error: 'bad_request',
    });
  });

  it('a local app that cannot be dialled (502), refuses the upgrade (403) or is left by the caller (499)', async () => {
    const down = plain(port, `GET /in/down HTTP/1.1\r\nHost: gone\r\n${UPGRADE_TCP}`);
    await down.ended;
    expect(await onlyLine(gone.logs, 'inbound', '/in/down')).toMatchObject({
      kind: 'upgrade',
      upstream: 'gone',
      status: 502,
      error: 'upstream_unreachable',
    });

    const refused = plain(port, `GET /refuse/in HTTP/1.1\r\nHost: chat\r\n${UPGRADE_TCP}`);
    await refused.ended;
    expect(refused.text()).toMatch(/^HTTP\/1\.1 403/);
    const line = await onlyLine(chat.logs, 'inbound', '/refuse/in');
    expect(line).toMatchObject({ kind: 'upgrade', status: 403 });
    expect(line).not.toHaveProperty('error');

    const held = plain(port, `GET /hold/in HTTP/1.1\r\nHost: chat\r\n${UPGRADE_TCP}`);
    await new Promise((r) => setTimeout(r, 300));
    held.socket.destroy();
    const left = await onlyLine(chat.logs, 'inbound', '/hold/in');
    expect(left).toMatchObject({ kind: 'upgrade', status: 499 });
    expect(left).not.toHaveProperty('error');
  });

  it('established tunnels are logged once at their end: closed, reset by the app (error), CONNECT 200', async () => {
    const t = plain(port, `GET /in/ok HTTP/1.1\r\nHost: chat\r\n${UPGRADE_TCP}`);
    await until(() => t.text().startsWith('HTTP/1.1 101'), 'the 101');
    t.socket.write('hello');
    await until(() => t.text().endsWith('hello'), 'the echo');
    expect(linesOf(chat.logs, 'inbound', '/in/ok')).toHaveLength(0);
    t.socket.end();
    await t.ended;
    expect(await onlyLine(chat.logs, 'inbound', '/in/ok')).toMatchObject({
      kind: 'upgrade',
      caller: CALLER,
      upstream: 'chat',
      status: 101,
      closeReason: 'closed',
      bytesReceived: 5,
      bytesSent: 5,
    });

    const r = plain(port, `GET /in/reset HTTP/1.1\r\nHost: chat\r\n${UPGRADE_TCP}`);
    await until(() => r.text().startsWith('HTTP/1.1 101'), 'the 101');
    r.socket.write('reset');
    await r.ended;
    expect(await onlyLine(chat.logs, 'inbound', '/in/reset')).toMatchObject({
      status: 101,
      closeReason: 'error',
    });

    const c = plain(port, 'CONNECT chat:443 HTTP/1.1\r\nHost: chat:443\r\n\r\n');
    await until(() => c.text().startsWith('HTTP/1.1 200'), 'the CONNECT 200');
    c.socket.write('xyz');
    await until(() => c.text().endsWith('xyz'), 'the echo');
    c.socket.end();
    await c.ended;
    const connects = (): Line[] =>
      chat.logs.filter((l) => l.msg === 'access' && l.direction === 'inbound' && l.kind === 'connect');
    await until(() => connects().length > 0, 'the inbound CONNECT line');
    await new Promise((r) => setTimeout(r, 100));
    expect(connects()).toHaveLength(1);
    // A asks B for a tunnel to "chat:<B's port>" (the port the client named is not used).
    expect(connects()[0]!.path).toMatch(/^chat:\d+$/);
    expect(connects()[0]).toMatchObject({
      caller: CALLER,
      upstream: 'chat',
      status: 200,
      closeReason: 'closed',
      bytesReceived: 3,
    });
  });

  it('a tunnel the drain closes is logged with closeReason drain', async () => {
    const t = plain(port, `GET /in/drained HTTP/1.1\r\nHost: chat\r\n${UPGRADE_TCP}`);
    await until(() => t.text().startsWith('HTTP/1.1 101'), 'the 101');
    await chat.daemon.shutdown('test');
    expect(await onlyLine(chat.logs, 'inbound', '/in/drained')).toMatchObject({
      kind: 'upgrade',
      status: 101,
      closeReason: 'drain',
    });
  });
});
