// A request a listener refuses after parsing its head (too many header fields, no Host, another HTTP version, CONNECT where no tunnel opens) keeps and echoes the request id a handler's refusal would, with a full access line.
import { readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayUrl } from '../gateway/fixtures.ts';
import { h2Exchange } from '../helpers/h2-request.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { accessLine, DURATION, overTcp, overMtls, UUID } from './access-lines.ts';

/** `n` header fields (`a:1`, 5 bytes each: 1001 fit the gateway's 8 KiB head), to go past a listener's `maxHeadersCount`. */
function fields(n: number): string {
  return 'a:1\r\n'.repeat(n);
}

/** The listener refusal's outbound line: a handler refusal's fields (upstream "", endpoint null, 0 attempts). */
function outboundLine(requestId: unknown, method: string, path: string, status: number, error: string) {
  return {
    requestId,
    direction: 'outbound',
    method,
    path,
    upstream: '',
    endpoint: null,
    status,
    attempts: 0,
    durationMs: DURATION,
    error,
  };
}

describe('outbound listener refusals of a parsed head: request id kept, echoed and on a full line', () => {
  let up: TestUpstream;
  let m: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    up = await startUpstream();
    m = await startMeshlet({
      registry: { type: 'static', endpoints: { orders: [up.endpoint] } },
      accessLog: { enabled: false, sampleRate: 0 },
    });
    port = Number(new URL(m.outbound).port);
  });
  afterAll(async () => {
    await m?.close();
    await up?.close();
  });

  it('120 header fields (more than maxHeadersCount 100) with x-request-id: abc-123 → 400 echoing it', async () => {
    const reply = parseReply(
      await overTcp(
        port,
        `GET /many?x=1 HTTP/1.1\r\nHost: orders\r\nx-request-id: abc-123\r\n${fields(120)}\r\n`,
      ),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-meshlet-error']).toBe('bad_request');
    expect(reply.body).toContain('122 header fields');
    expect(reply.headers['x-request-id']).toBe('abc-123');
    expect(await accessLine(m, (l) => l.requestId === 'abc-123')).toEqual(
      outboundLine('abc-123', 'GET', '/many?x=1', 400, 'bad_request'),
    );
  });

  it('an HTTP/1.1 request without Host and without an id → 400 with a generated id, on the line', async () => {
    const reply = parseReply(await overTcp(port, 'GET /no-host HTTP/1.1\r\n\r\n'));
    expect(reply.status).toBe(400);
    expect(reply.body).toContain('must carry a Host header');
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.requestId === id)).toEqual(
      outboundLine(id, 'GET', '/no-host', 400, 'bad_request'),
    );
  });

  it('HTTP/2.0 in an HTTP/1.1 request line → 400 echoing the client’s id', async () => {
    const reply = parseReply(
      await overTcp(port, 'GET /v2 HTTP/2.0\r\nHost: orders\r\nx-request-id: version-1\r\n\r\n'),
    );
    expect(reply.status).toBe(400);
    expect(reply.body).toContain('is not spoken on an HTTP/1.1 connection');
    expect(reply.headers['x-request-id']).toBe('version-1');
    expect(await accessLine(m, (l) => l.requestId === 'version-1')).toEqual(
      outboundLine('version-1', 'GET', '/v2', 400, 'bad_request'),
    );
  });

  it('an upgrade with 120 header fields → the raw 400 echoes the client’s id', async () => {
    const reply = parseReply(
      await overTcp(
        port,
        `GET /ws-many HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-request-id: upgrade-many-1\r\n${fields(120)}\r\n`,
      ),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-request-id']).toBe('upgrade-many-1');
    expect(await accessLine(m, (l) => l.requestId === 'upgrade-many-1')).toEqual(
      outboundLine('upgrade-many-1', 'GET', '/ws-many', 400, 'bad_request'),
    );
  });

  it('a CONNECT with 120 header fields → a generated id (a CONNECT forwards no header), echoed and on the line', async () => {
    const reply = parseReply(
      await overTcp(
        port,
        `CONNECT orders:443 HTTP/1.1\r\nHost: orders:443\r\nx-request-id: connect-many-1\r\n${fields(120)}\r\n`,
      ),
    );
    expect(reply.status).toBe(400);
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.requestId === id)).toEqual(
      outboundLine(id, 'CONNECT', 'orders:443', 400, 'bad_request'),
    );
    expect(m.logs.some((l) => l.requestId === 'connect-many-1')).toBe(false);
  });

  it('h2c: a Host naming another authority than :authority → 400 echoing the client’s id', async () => {
    const { head } = await h2Exchange(m.outbound, {
      ':method': 'GET',
      ':path': '/h2-host',
      ':authority': 'orders',
      host: 'elsewhere',
      'x-request-id': 'h2-host-1',
    });
    expect(head[':status']).toBe(400);
    expect(head['x-request-id']).toBe('h2-host-1');
    expect(await accessLine(m, (l) => l.requestId === 'h2-host-1')).toEqual(
      outboundLine('h2-host-1', 'GET', '/h2-host', 400, 'bad_request'),
    );
  });

  it('a head that never parsed keeps the short line and echoes no id', async () => {
    const before = m.logs.length;
    const reply = parseReply(await overTcp(port, 'GET /a HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n'));
    expect(reply.status).toBe(400);
    expect(reply.headers['x-request-id']).toBeUndefined();
    const line = await accessLine(
      m,
      (l) => m.logs.indexOf(l) >= before && l.status === 400 && l.method === undefined,
    );
    expect(line).toEqual({
      direction: 'outbound',
      upstream: '',
      endpoint: null,
      status: 400,
      attempts: 0,
      error: 'bad_request',
    });
  });
});

describe('gateway listener refusals of a parsed head: the id the gateway’s forwarding pass would keep', () => {
  let up: TestUpstream;
  let edge: InProcessMeshlet;
  let behindProxy: InProcessMeshlet;

  const gatewayConfig = (trustedProxies: number) => ({
    listeners: { gateway: { address: '127.0.0.1', port: 0 } },
    registry: { type: 'static' as const, endpoints: { orders: [up.endpoint] } },
    accessLog: { enabled: false, sampleRate: 0 },
    gateway: { trustedProxies, routes: [{ match: { pathPrefix: '/orders/' }, upstream: 'orders' }] },
  });
  const gatewayPort = (m: InProcessMeshlet) => Number(new URL(gatewayUrl(m.daemon)).port);

  beforeAll(async () => {
    up = await startUpstream();
    edge = await startMeshlet(gatewayConfig(0));
    behindProxy = await startMeshlet(gatewayConfig(1));
  });
  afterAll(async () => {
    await edge?.close();
    await behindProxy?.close();
    await up?.close();
  });

  it('trustedProxies 0: 1001 header fields with an outside client’s id → 400 with a new id, never the client’s', async () => {
    const reply = parseReply(
      await overTcp(
        gatewayPort(edge),
        `GET /orders/many HTTP/1.1\r\nHost: api\r\nx-request-id: outside-many-1\r\n${fields(1001)}\r\n`,
      ),
    );
    expect(reply.status).toBe(400);
    expect(reply.body).toContain('header fields');
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(edge, (l) => l.requestId === id)).toEqual(
      outboundLine(id, 'GET', '/orders/many', 400, 'bad_request'),
    );
    expect(edge.logs.some((l) => l.requestId === 'outside-many-1')).toBe(false);
  });

  it('trustedProxies 0: no Host with an outside client’s id → a new id', async () => {
    const reply = parseReply(
      await overTcp(gatewayPort(edge), 'GET /orders/no-host HTTP/1.1\r\nx-request-id: outside-1\r\n\r\n'),
    );
    expect(reply.status).toBe(400);
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(edge, (l) => l.requestId === id)).toEqual(
      outboundLine(id, 'GET', '/orders/no-host', 400, 'bad_request'),
    );
    expect(edge.logs.some((l) => l.requestId === 'outside-1')).toBe(false);
  });

  it('trustedProxies 1: no Host with the proxy’s id → kept, echoed and on the line', async () => {
    const reply = parseReply(
      await overTcp(
        gatewayPort(behindProxy),
        'GET /orders/no-host HTTP/1.1\r\nx-request-id: proxy-1\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-request-id']).toBe('proxy-1');
    expect(await accessLine(behindProxy, (l) => l.requestId === 'proxy-1')).toEqual(
      outboundLine('proxy-1', 'GET', '/orders/no-host', 400, 'bad_request'),
    );
  });

  it('CONNECT (no tunnel opens at the gateway) → 405 with a generated id, echoed and on the line', async () => {
    const reply = parseReply(
      await overTcp(
        gatewayPort(behindProxy),
        'CONNECT orders:443 HTTP/1.1\r\nHost: orders:443\r\nx-request-id: connect-1\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(405);
    expect(reply.headers['allow']).toBe('GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE');
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(behindProxy, (l) => l.requestId === id)).toEqual(
      outboundLine(id, 'CONNECT', 'orders:443', 405, 'method_not_allowed'),
    );
  });
});

describe('inbound (mTLS) listener refusals of a parsed head: the caller’s id kept, echoed and on the inbound line', () => {
  const TD = 'spiffe://mesh.test/svc';
  let pki: TestPki;
  let app: TestUpstream;
  let m: InProcessMeshlet;
  let inboundPort: number;
  let web: { ca: Buffer; cert: Buffer; key: Buffer; serial: string };

  /** Writes `text` on a fresh HTTP/1.1-over-mTLS connection as `web`; resolves with the reply once closed (≤ 5 s). */
  const overTls = (text: string): Promise<string> => overMtls(inboundPort, web, text);

  const inboundLine = (requestId: unknown, path: string) => ({
    requestId,
    direction: 'inbound',
    caller: `${TD}/web`,
    peerSerial: web.serial,
    method: 'GET',
    path,
    upstream: 'orders',
    status: 400,
    durationMs: DURATION,
    error: 'bad_request',
  });

  beforeAll(async () => {
    pki = await makePki();
    app = await startUpstream();
    m = await startMeshlet({
      service: { name: 'orders', port: app.port },
      tls: await tlsFilesConfig(pki, 'orders'),
      accessLog: { enabled: false, sampleRate: 0 },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      registry: { type: 'static', endpoints: {} },
    });
    inboundPort = m.daemon.addresses().inbound!.port;
    const leaf = await pki.write('web');
    web = {
      ca: readFileSync(pki.caFile),
      cert: readFileSync(leaf.cert),
      key: readFileSync(leaf.key),
      serial: leaf.serialNumber,
    };
  }, 30_000);
  afterAll(async () => {
    await m?.close();
    await app?.close();
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('no Host with x-request-id → 400 echoing it; the line has path, upstream and duration', async () => {
    const reply = parseReply(
      await overTls('GET /inb/no-host HTTP/1.1\r\nx-request-id: inb-no-host-1\r\n\r\n'),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-request-id']).toBe('inb-no-host-1');
    expect(await accessLine(m, (l) => l.requestId === 'inb-no-host-1')).toEqual(
      inboundLine('inb-no-host-1', '/inb/no-host'),
    );
  });

  it('1001 header fields (more than 1000) without an id → 400 with a generated id, on the line', async () => {
    const reply = parseReply(await overTls(`GET /inb/many HTTP/1.1\r\nHost: orders\r\n${fields(1001)}\r\n`));
    expect(reply.status).toBe(400);
    expect(reply.body).toContain('header fields');
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.requestId === id)).toEqual(inboundLine(id, '/inb/many'));
  });

  it('HTTP/2: a Host naming another authority than :authority → 400 echoing the caller’s id', async () => {
    const { head } = await h2Exchange(
      `https://127.0.0.1:${inboundPort}`,
      {
        ':method': 'GET',
        ':path': '/inb/h2-host',
        ':authority': 'orders',
        host: 'elsewhere',
        'x-request-id': 'inb-h2-host-1',
      },
      { ca: web.ca, cert: web.cert, key: web.key },
    );
    expect(head[':status']).toBe(400);
    expect(head['x-request-id']).toBe('inb-h2-host-1');
    expect(await accessLine(m, (l) => l.requestId === 'inb-h2-host-1')).toEqual(
      inboundLine('inb-h2-host-1', '/inb/h2-host'),
    );
  });
});
