// A request or tunnel the inbound listener, or the outbound listener's tunnel entry, refuses gets a forwarded request's access line and echoes its request id.
import { readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { sampleValue, scrapeMetrics } from '../helpers/metrics.ts';
import { parseReply } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { accessLine, DURATION, overTcp, overMtls, UUID } from './access-lines.ts';

const TD = 'spiffe://mesh.test/svc';

/** A caller's client certificate files, read. */
interface Caller {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly serial: string;
}

async function caller(pki: TestPki, service: string): Promise<Caller> {
  const leaf = await pki.write(service);
  return {
    ca: readFileSync(pki.caFile),
    cert: readFileSync(leaf.cert),
    key: readFileSync(leaf.key),
    serial: leaf.serialNumber,
  };
}

describe('access lines and x-request-id of inbound and tunnel refusals', () => {
  let pki: TestPki;
  let app: TestUpstream;
  let m: InProcessMeshlet;
  let inboundPort: number;
  let outboundPort: number;
  let web: Caller;
  let evil: Caller;
  let lim: Caller;

  beforeAll(async () => {
    pki = await makePki();
    app = await startUpstream();
    m = await startMeshlet({
      service: { name: 'orders', port: app.port },
      tls: await tlsFilesConfig(pki, 'orders'),
      accessLog: { enabled: false, sampleRate: 0 },
      listeners: {
        inbound: {
          address: '127.0.0.1',
          port: 0,
          allow: ['web', 'lim'],
          rateLimit: { perSecond: 0.001, burst: 1 },
        },
      },
      registry: { type: 'static', endpoints: {} },
    });
    inboundPort = m.daemon.addresses().inbound!.port;
    outboundPort = Number(new URL(m.outbound).port);
    web = await caller(pki, 'web');
    evil = await caller(pki, 'evil');
    lim = await caller(pki, 'lim');
  }, 30_000);
  afterAll(async () => {
    await m?.close();
    await app?.close();
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('inbound 403 forbidden (caller not allowed), no x-request-id sent: a generated one, on the line and echoed', async () => {
    const reply = parseReply(
      await overMtls(
        inboundPort,
        evil,
        'GET /inb/forbidden HTTP/1.1\r\nhost: orders\r\nconnection: close\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(403);
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.path === '/inb/forbidden')).toEqual({
      requestId: id,
      direction: 'inbound',
      caller: `${TD}/evil`,
      peerSerial: evil.serial,
      method: 'GET',
      path: '/inb/forbidden',
      upstream: 'orders',
      status: 403,
      durationMs: DURATION,
      error: 'forbidden',
    });
  });

  it('inbound 400 bad_request (a target with a # fragment): the caller’s x-request-id kept on the line and echoed', async () => {
    const reply = parseReply(
      await overMtls(
        inboundPort,
        web,
        'GET /inb/target#frag HTTP/1.1\r\nhost: orders\r\nx-request-id: inb-target-1\r\nconnection: close\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-meshlet-error']).toBe('bad_request');
    expect(reply.headers['x-request-id']).toBe('inb-target-1');
    expect(await accessLine(m, (l) => l.requestId === 'inb-target-1')).toEqual({
      requestId: 'inb-target-1',
      direction: 'inbound',
      caller: `${TD}/web`,
      peerSerial: web.serial,
      method: 'GET',
      path: '/inb/target#frag',
      upstream: 'orders',
      status: 400,
      durationMs: DURATION,
      error: 'bad_request',
    });
  });

  it('inbound 400 bad_request (two Host headers, found by the forwarding pass): its request id on the line and echoed', async () => {
    const reply = parseReply(
      await overMtls(
        inboundPort,
        web,
        'GET /inb/hosts HTTP/1.1\r\nhost: orders\r\nhost: other\r\nx-request-id: inb-hosts-1\r\nconnection: close\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(400);
    expect(reply.body).toContain('more than one Host header');
    expect(reply.headers['x-request-id']).toBe('inb-hosts-1');
    expect(await accessLine(m, (l) => l.requestId === 'inb-hosts-1')).toEqual({
      requestId: 'inb-hosts-1',
      direction: 'inbound',
      caller: `${TD}/web`,
      peerSerial: web.serial,
      method: 'GET',
      path: '/inb/hosts',
      upstream: 'orders',
      status: 400,
      durationMs: DURATION,
      error: 'bad_request',
    });
  });

  it('inbound 504 upstream_timeout (a deadline under 10 ms), x-request-id named by Connection: a new id, as forwarding would send', async () => {
    const reply = parseReply(
      await overMtls(
        inboundPort,
        web,
        'GET /inb/deadline HTTP/1.1\r\nhost: orders\r\nx-meshlet-timeout-ms: 0\r\nx-request-id: dropped-1\r\nconnection: close, x-request-id\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(504);
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.path === '/inb/deadline')).toEqual({
      requestId: id,
      direction: 'inbound',
      caller: `${TD}/web`,
      peerSerial: web.serial,
      method: 'GET',
      path: '/inb/deadline',
      upstream: 'orders',
      status: 504,
      durationMs: DURATION,
      error: 'upstream_timeout',
    });
  });

  it('inbound 429 rate_limited (the caller’s bucket is empty): its request id on the line and echoed', async () => {
    const first = parseReply(
      await overMtls(
        inboundPort,
        lim,
        'GET /inb/rate-1 HTTP/1.1\r\nhost: orders\r\nconnection: close\r\n\r\n',
      ),
    );
    expect(first.status).toBe(200);
    const reply = parseReply(
      await overMtls(
        inboundPort,
        lim,
        'GET /inb/rate-2 HTTP/1.1\r\nhost: orders\r\nx-request-id: inb-rate-2\r\nconnection: close\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(429);
    expect(reply.headers['x-request-id']).toBe('inb-rate-2');
    expect(await accessLine(m, (l) => l.requestId === 'inb-rate-2')).toEqual({
      requestId: 'inb-rate-2',
      direction: 'inbound',
      caller: `${TD}/lim`,
      peerSerial: lim.serial,
      method: 'GET',
      path: '/inb/rate-2',
      upstream: 'orders',
      status: 429,
      durationMs: DURATION,
      error: 'rate_limited',
    });
  });

  it('inbound tunnel 403 forbidden: the line’s request id (the caller’s) is echoed on the raw refusal', async () => {
    const reply = parseReply(
      await overMtls(
        inboundPort,
        evil,
        'GET /inb/ws HTTP/1.1\r\nhost: orders\r\nconnection: Upgrade\r\nupgrade: websocket\r\nx-request-id: inb-ws-1\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(403);
    expect(reply.headers['x-request-id']).toBe('inb-ws-1');
    expect(await accessLine(m, (l) => l.requestId === 'inb-ws-1')).toEqual({
      requestId: 'inb-ws-1',
      direction: 'inbound',
      kind: 'websocket',
      caller: `${TD}/evil`,
      peerSerial: evil.serial,
      method: 'GET',
      path: '/inb/ws',
      upstream: 'orders',
      status: 403,
      durationMs: DURATION,
      error: 'forbidden',
    });
  });

  it('outbound upgrade 404 no_route: the client’s x-request-id on the line and echoed; endpoint null, attempts 0', async () => {
    const reply = parseReply(
      await overTcp(
        outboundPort,
        'GET /out/ws HTTP/1.1\r\nhost: nowhere\r\nconnection: Upgrade\r\nupgrade: websocket\r\nx-request-id: out-ws-1\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(404);
    expect(reply.headers['x-request-id']).toBe('out-ws-1');
    expect(await accessLine(m, (l) => l.requestId === 'out-ws-1')).toEqual({
      requestId: 'out-ws-1',
      direction: 'outbound',
      kind: 'websocket',
      method: 'GET',
      path: '/out/ws',
      upstream: '',
      endpoint: null,
      status: 404,
      attempts: 0,
      durationMs: DURATION,
      error: 'no_route',
    });
  });

  it('outbound CONNECT 404 no_route: a generated request id (a CONNECT forwards no header) on the line and echoed', async () => {
    const reply = parseReply(
      await overTcp(
        outboundPort,
        'CONNECT nowhere:443 HTTP/1.1\r\nhost: nowhere:443\r\nx-request-id: ignored\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(404);
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.requestId === id)).toEqual({
      requestId: id,
      direction: 'outbound',
      kind: 'connect',
      method: 'CONNECT',
      path: 'nowhere:443',
      upstream: '',
      endpoint: null,
      status: 404,
      attempts: 0,
      durationMs: DURATION,
      error: 'no_route',
    });
  });

  it('the request-duration histogram times an outbound tunnel refusal as its line does (not as 0 s)', async () => {
    const series = { direction: 'outbound', upstream: '', status_class: '4xx' };
    const before = await scrapeMetrics(m.admin);
    for (let i = 0; i < 5; i++) {
      const reply = await overTcp(
        outboundPort,
        `GET /out/timed-${i} HTTP/1.1\r\nhost: nowhere\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n`,
      );
      expect(parseReply(reply).status).toBe(404);
    }
    const after = await scrapeMetrics(m.admin);
    const count = (t: string) => sampleValue(t, 'meshlet_request_duration_seconds_count', series);
    const sum = (t: string) => sampleValue(t, 'meshlet_request_duration_seconds_sum', series);
    expect(count(after) - count(before)).toBe(5);
    const added = sum(after) - sum(before);
    expect(added).toBeGreaterThan(0);
    expect(added).toBeLessThan(5);
  });
});
