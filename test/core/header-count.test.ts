// Requests with many small header fields: up to listeners.outbound.maxHeadersCount (default 100) all are forwarded, past it 400, never some dropped.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { listenHttp } from '../../src/listener/http-listener.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

/**
 * A request head with `fields` header fields in all: Host, `Connection: close`, the `extra` lines,
 * tiny filler fields, and `X-Last: yes` last.
 */
function headWith(fields: number, extra: readonly string[] = []): string {
  const lines = ['Host: users', 'Connection: close', ...extra];
  while (lines.length < fields - 1)
    lines.push(`${String.fromCharCode(97 + (lines.length % 26))}:${lines.length % 10}`);
  lines.push('X-Last: yes');
  return `GET /many HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

/** Sends `head` and parses the answer (meshlet closes the connection after it). */
async function send(port: number, head: string): Promise<ReturnType<typeof parseReply>> {
  return parseReply(await rawRequest(port, head, 3000));
}

describe('header field count on the outbound side', () => {
  let up: TestUpstream;
  let mesh: InProcessMeshlet;
  let wide: InProcessMeshlet;
  let port: number;
  let perUpstreamPort: number;

  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      res.end(JSON.stringify({ fields: req.rawHeaders.length / 2, last: req.headers['x-last'] ?? null }));
    });
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: [up.endpoint] } },
      upstreams: { users: { port: await closedPort() } },
    });
    wide = await startMeshlet({
      listeners: { outbound: { port: 0, maxHeadersCount: 300 } },
      registry: { type: 'static', endpoints: { users: [up.endpoint] } },
      accessLog: { enabled: false },
    });
    port = Number(new URL(mesh.outbound).port);
    perUpstreamPort = mesh.daemon.addresses().upstreams.users!.port;
  });
  afterAll(async () => {
    await mesh.close();
    await wide.close();
    await up.close();
  });

  it('100 fields (the default limit) reach the endpoint, every one of them', async () => {
    for (const p of [port, perUpstreamPort]) {
      const reply = await send(p, headWith(100));
      expect(reply.status).toBe(200);
      const seen = JSON.parse(reply.body) as { fields: number; last: string | null };
      expect(seen.last).toBe('yes');
      // meshlet adds its own (x-request-id, x-forwarded-*, x-meshlet-timeout-ms): none of the app's is lost.
      expect(seen.fields).toBeGreaterThanOrEqual(100);
    }
  });

  it('101 fields get 400 bad_request naming the count and the limit, on both listeners; nothing is forwarded', async () => {
    const before = up.requests.length;
    for (const p of [port, perUpstreamPort]) {
      const reply = await send(p, headWith(101));
      expect(reply.status).toBe(400);
      expect(reply.headers['x-meshlet-error']).toBe('bad_request');
      expect(reply.headers.connection).toBe('close');
      expect(JSON.parse(reply.body)).toMatchObject({
        error: 'bad_request',
        message: 'request has 101 header fields, more than the 100 meshlet accepts',
      });
    }
    expect(up.requests.length).toBe(before);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(
      /^meshlet_local_replies_total\{direction="outbound",upstream="",code="bad_request"\} 2$/m,
    );
    const access = mesh.logs.filter((l) => l.msg === 'access' && l.error === 'bad_request');
    expect(access).toHaveLength(2);
    expect(access[0]).toMatchObject({ method: 'GET', status: 400 });
  });

  it('a WebSocket upgrade with too many fields is refused the same way, before any tunnel', async () => {
    const before = up.requests.length;
    const upgrade = [
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ];
    const reply = await send(
      port,
      headWith(150, upgrade).replace('Connection: close', 'Connection: Upgrade'),
    );
    expect(reply.status).toBe(400);
    expect(JSON.parse(reply.body)).toMatchObject({ error: 'bad_request' });
    expect(reply.body).toContain('more than the 100 meshlet accepts');
    expect(up.requests.length).toBe(before);
  });

  it('listeners.outbound.maxHeadersCount raises the limit: 300 fields pass whole, 301 are refused', async () => {
    const widePort = Number(new URL(wide.outbound).port);
    const ok = await send(widePort, headWith(300));
    expect(ok.status).toBe(200);
    expect((JSON.parse(ok.body) as { last: string }).last).toBe('yes');
    const refused = await send(widePort, headWith(301));
    expect(refused.status).toBe(400);
    expect(refused.body).toContain('request has 301 header fields, more than the 300 meshlet accepts');
  });
});

describe('header field count where a listener sets no limit (inbound, gateway)', () => {
  it("1000 fields pass whole; 1001 get meshlet's 400, not a dropped field nor Node's own refusal", async () => {
    const listener = await listenHttp('127.0.0.1', 0, (req, res) => {
      res.end(JSON.stringify({ last: req.headers['x-last'] }));
    });
    try {
      const ok = await send(listener.port, headWith(1000));
      expect(ok.status).toBe(200);
      expect((JSON.parse(ok.body) as { last: string }).last).toBe('yes');
      const refused = await send(listener.port, headWith(1001));
      expect(refused.status).toBe(400);
      expect(refused.body).toContain('request has 1001 header fields, more than the 1000 meshlet accepts');
    } finally {
      listener.destroy();
      listener.stopAccepting();
      await listener.closed();
    }
  });
});
