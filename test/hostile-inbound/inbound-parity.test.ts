// The inbound mTLS listener and the gateway's HTTP/2 side answer bad input as the outbound listener does.
import { readFileSync, rmSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessLines, meshForSuite, type Mesh } from '../hostile-output/two-meshlets.ts';
import { h2Request } from '../helpers/h2-request.ts';
import { startMeshlet, type InProcessMeshlet } from '../helpers/meshlet.ts';
import { metricValue } from '../helpers/metrics.ts';
import { collectReply } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, tlsFilesConfig, type TestPki } from '../tls/tls-helpers.ts';

const WEB = 'spiffe://mesh.test/svc/web';

/** PEM contents of the fixture's `web` client certificate. */
function clientTls(mesh: Mesh): { ca: Buffer; cert: Buffer; key: Buffer } {
  return {
    ca: readFileSync(mesh.client.ca),
    cert: readFileSync(mesh.client.cert),
    key: readFileSync(mesh.client.key),
  };
}

/**
 * Writes `text` (latin1) on a fresh HTTP/1.1-over-mTLS connection to `port` and resolves with all
 * the server sent until it closed (≤ `timeoutMs`, else rejects).
 */
async function tlsRaw(
  port: number,
  text: string,
  tls: { ca: Buffer; cert: Buffer; key: Buffer },
  timeoutMs = 5000,
): Promise<string> {
  const socket = tlsConnect(
    { port, host: '127.0.0.1', ...tls, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] },
    () => socket.write(Buffer.from(text, 'latin1')),
  );
  const reply = await collectReply(socket, { timeoutMs });
  if (reply.timedOut)
    throw new Error(
      `connection not closed within ${timeoutMs} ms: ${JSON.stringify(reply.text.slice(0, 200))}`,
    );
  return reply.text;
}

const localReplies = (admin: string, code: string) =>
  metricValue(admin, 'meshlet_local_replies_total', { direction: 'inbound', upstream: 'orders', code });

describe('the inbound listener and the gateway over HTTP/2 on bad input', () => {
  const mesh = meshForSuite();
  let tls: { ca: Buffer; cert: Buffer; key: Buffer };
  let inbound: string;
  beforeAll(() => {
    tls = clientTls(mesh);
    inbound = `https://127.0.0.1:${mesh.inboundPort}`;
  });
  const appSaw = (path: string) => mesh.app.requests.some((r) => r.url?.startsWith(path));

  it('answers a caller deadline under 10 ms itself with 504 upstream_timeout: the local app is never called', async () => {
    const before = await localReplies(mesh.b.admin, 'upstream_timeout');
    const reply = await tlsRaw(
      mesh.inboundPort,
      'GET /deadline-zero HTTP/1.1\r\nhost: orders\r\nx-meshlet-timeout-ms: 0\r\nconnection: close\r\n\r\n',
      tls,
    );
    expect(reply).toMatch(/^HTTP\/1\.1 504 /);
    expect(reply).toContain('x-meshlet-error: upstream_timeout');
    expect(reply).toContain("the caller's deadline of 0 ms leaves the local app no time");
    const grpc = await h2Request(
      inbound,
      {
        ':path': '/pkg.Svc/Deadline',
        ':method': 'POST',
        'content-type': 'application/grpc',
        'grpc-timeout': '9m',
      },
      tls,
    );
    expect(grpc[':status']).toBe(200);
    expect(grpc['grpc-status']).toBe('4');
    expect(grpc['grpc-message']).toContain("the caller's deadline of 9 ms");
    const [line] = await accessLines(mesh.b, '/deadline-zero');
    expect(JSON.parse(line!)).toMatchObject({
      direction: 'inbound',
      caller: WEB,
      status: 504,
      error: 'upstream_timeout',
    });
    await accessLines(mesh.b, '/pkg.Svc/Deadline');
    expect(await localReplies(mesh.b.admin, 'upstream_timeout')).toBe(before + 2);
    // A deadline the app can meet still reaches it.
    const ok = await tlsRaw(
      mesh.inboundPort,
      'GET /deadline-ok HTTP/1.1\r\nhost: orders\r\nx-meshlet-timeout-ms: 5000\r\nconnection: close\r\n\r\n',
      tls,
    );
    expect(ok).toMatch(/^HTTP\/1\.1 200 /);
    expect(appSaw('/deadline-zero') || appSaw('/pkg.Svc/Deadline')).toBe(false);
  });

  it('counts and logs, with the peer identity, the HTTP/1.1 heads node:http refuses', async () => {
    const before = await localReplies(mesh.b.admin, 'bad_request');
    const start = mesh.b.lines.length;
    const malformed = await tlsRaw(mesh.inboundPort, 'GET /m HTTP/1.1\r\nho st: x\r\n\r\n', tls);
    expect(malformed).toMatch(/^HTTP\/1\.1 400 /);
    const fields = Array.from({ length: 1001 }, (_, i) => `x-f${i}: v\r\n`).join('');
    const many = await tlsRaw(mesh.inboundPort, `GET /many HTTP/1.1\r\nhost: orders\r\n${fields}\r\n`, tls);
    expect(many).toMatch(/^HTTP\/1\.1 400 /);
    expect(many).toContain('header fields');
    const big = await tlsRaw(
      mesh.inboundPort,
      `GET /big HTTP/1.1\r\nhost: orders\r\nx-big: ${'a'.repeat(140 * 1024)}\r\n\r\n`,
      tls,
    );
    expect(big).toMatch(/^HTTP\/1\.1 400 /);
    const deadline = Date.now() + 2000;
    let lines: Record<string, unknown>[] = [];
    while (Date.now() < deadline) {
      lines = mesh.b.lines
        .slice(start)
        .filter((l) => l.includes('"msg":"access"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      if (lines.length >= 3) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(lines).toHaveLength(3);
    for (const line of lines)
      expect(line).toMatchObject({ direction: 'inbound', caller: WEB, status: 400, error: 'bad_request' });
    expect(lines[0]!.peerSerial).toMatch(/^[0-9A-F]+$/);
    expect(lines.map((l) => l.method)).toEqual([undefined, 'GET', undefined]);
    expect(await localReplies(mesh.b.admin, 'bad_request')).toBe(before + 3);
    expect(appSaw('/m') || appSaw('/many') || appSaw('/big')).toBe(false);
  });

  it('refuses an unknown method with its own 400 and an access line, over HTTP/1.1 and HTTP/2, on both meshlets', async () => {
    // Meshlet A's outbound listener over h2c: refused at the first hop, as over HTTP/1.1.
    const viaA = await h2Request(`http://127.0.0.1:${mesh.outboundPort}`, {
      ':method': 'FOO',
      ':path': '/foo-a',
      ':authority': 'orders',
    });
    expect(viaA[':status']).toBe(400);
    expect(viaA['x-meshlet-error']).toBe('bad_request');
    expect(viaA['x-meshlet-attempts']).toBeUndefined();
    // Meshlet B's inbound listener over h2 and over HTTP/1.1: the same 400 and an access line each.
    const h2 = await h2Request(inbound, { ':method': 'FOO', ':path': '/foo-b2' }, tls);
    expect(h2[':status']).toBe(400);
    expect(h2['x-meshlet-error']).toBe('bad_request');
    const [h2Line] = await accessLines(mesh.b, '/foo-b2');
    expect(JSON.parse(h2Line!)).toMatchObject({
      caller: WEB,
      method: 'FOO',
      status: 400,
      error: 'bad_request',
    });
    const start = mesh.b.lines.length;
    const h1 = await tlsRaw(mesh.inboundPort, 'FOO /foo-b1 HTTP/1.1\r\nhost: orders\r\n\r\n', tls);
    expect(h1).toMatch(/^HTTP\/1\.1 400 /);
    expect(h1).toContain('x-meshlet-error: bad_request');
    expect(h1).toContain('invalid HTTP method');
    await expect
      .poll(() => mesh.b.lines.slice(start).filter((l) => l.includes('"error":"bad_request"')).length, {
        timeout: 2000,
      })
      .toBe(1);
    expect(mesh.app.requests.some((r) => r.method === 'FOO')).toBe(false);
  });

  it("applies the outbound listener's request-target and method checks to the gateway's HTTP/2 requests", async () => {
    const gateway = `http://127.0.0.1:${mesh.gatewayPort}`;
    const fragment = await h2Request(gateway, { ':path': '/pub/frag#x', ':authority': 'api' });
    expect(fragment[':status']).toBe(400);
    expect(fragment['x-meshlet-error']).toBe('bad_request');
    const latin1 = await h2Request(gateway, { ':path': '/pub/caf\u00e9', ':authority': 'api' });
    expect(latin1[':status']).toBe(400);
    expect(latin1['x-meshlet-error']).toBe('bad_request');
    const foo = await h2Request(gateway, { ':method': 'FOO', ':path': '/pub/foo-gw', ':authority': 'api' });
    expect(foo[':status']).toBe(400);
    expect(foo['x-meshlet-error']).toBe('bad_request');
    expect(appSaw('/pub/frag') || appSaw('/pub/caf') || appSaw('/pub/foo-gw')).toBe(false);
    const refused = mesh.a.lines.filter(
      (l) =>
        l.includes('"msg":"access"') && l.includes('"status":400') && l.includes('"error":"bad_request"'),
    );
    expect(refused.length).toBeGreaterThanOrEqual(3);
  });
});

describe("the inbound listener's headersTimeout", () => {
  let pki: TestPki;
  let app: TestUpstream;
  let b: InProcessMeshlet;
  beforeAll(async () => {
    pki = await makePki();
    app = await startUpstream((_req, res) => res.end('ok'));
    b = await startMeshlet({
      service: { name: 'orders', port: app.port },
      accessLog: { enabled: true, sampleRate: 1 },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'], headersTimeout: 300 } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
  }, 30_000);
  afterAll(async () => {
    await b?.close();
    await app?.close();
    rmSync(pki.dir, { recursive: true, force: true });
  });

  it('answers a slow head 408 and counts and logs it as an inbound request_timeout', async () => {
    const leaf = await pki.write('web');
    const tls = { ca: readFileSync(pki.caFile), cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) };
    const port = b.daemon.addresses().inbound!.port;
    const reply = await tlsRaw(port, 'GET /slow HTTP/1.1\r\nhost: orders\r\n', tls, 5000);
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    await expect
      .poll(() => b.logs.filter((l) => l.msg === 'access' && l.error === 'request_timeout'), {
        timeout: 2000,
      })
      .toHaveLength(1);
    const line = b.logs.find((l) => l.msg === 'access' && l.error === 'request_timeout')!;
    expect(line).toMatchObject({ direction: 'inbound', caller: WEB, status: 408 });
    expect(
      await metricValue(b.admin, 'meshlet_local_replies_total', {
        direction: 'inbound',
        upstream: 'orders',
        code: 'request_timeout',
      }),
    ).toBe(1);
  });
});
