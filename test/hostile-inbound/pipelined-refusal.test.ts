// A pipelined HTTP/1.1 request the inbound listener refuses itself is logged and counted with its caller, as any other refusal.
import { readFileSync, rmSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';

const WEB = 'spiffe://mesh.test/svc/web';
/** How long the local app holds `/first`, ms: the pipelined request behind it waits meanwhile. */
const HOLD_MS = 150;

/**
 * Writes `text` on a fresh HTTP/1.1-over-mTLS connection to `port` and resolves with all the
 * server sent until it closed (≤ 5 s, else rejects).
 */
function tlsRaw(port: number, text: string, tls: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const socket = tlsConnect(
      { port, host: '127.0.0.1', ...tls, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] },
      () => socket.write(Buffer.from(text, 'latin1')),
    );
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection not closed within 5 s: ${JSON.stringify(out.slice(0, 200))}`));
    }, 5000);
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** `meshlet_inbound_denied_total{caller="web",reason="bad_request"}` from `admin`'s /metrics, 0 when absent. */
async function deniedBadRequest(admin: string, caller: string): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith('meshlet_inbound_denied_total{') &&
        l.includes(`caller="${caller}"`) &&
        l.includes('reason="bad_request"'),
    );
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('a pipelined request the inbound listener refuses', () => {
  let pki: TestPki;
  let app: TestUpstream;
  let b: InProcessMeshlet;
  let tls: { ca: Buffer; cert: Buffer; key: Buffer };
  let port: number;
  beforeAll(async () => {
    pki = await makePki();
    app = await startUpstream((req, res) => {
      req.resume();
      setTimeout(() => res.end('ok'), req.url === '/first' ? HOLD_MS : 0);
    });
    b = await startMeshlet({
      service: { name: 'orders', port: app.port },
      accessLog: { enabled: true, sampleRate: 1 },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
    const leaf = await pki.write('web');
    tls = { ca: readFileSync(pki.caFile), cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) };
    port = b.daemon.addresses().inbound!.port;
  }, 30_000);
  afterAll(async () => {
    await b?.close();
    await app?.close();
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it.each([
    ['another HTTP version', '/second-version HTTP/2.0\r\nhost: orders\r\n', 'is not spoken on an HTTP/1.1'],
    [
      'too many header fields',
      `/second-fields HTTP/1.1\r\nhost: orders\r\n${'x-f: 1\r\n'.repeat(1000)}`,
      'header fields, more than the 1000',
    ],
  ])('(%s) names the caller in its access line and denial count', async (_why, second, message) => {
    const path = second.slice(0, second.indexOf(' '));
    const before = await deniedBadRequest(b.admin, 'web');
    const start = b.logs.length;
    const refusals = () =>
      b.logs.slice(start).filter((l) => l.msg === 'access' && l.status === 400 && l.method === 'GET');
    const reply = await tlsRaw(port, `GET /first HTTP/1.1\r\nhost: orders\r\n\r\nGET ${second}\r\n`, tls);
    // The request before it is answered first, then the refusal, and the connection closes.
    expect(reply).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nokHTTP\/1\.1 400 /);
    expect(reply).toContain('x-meshlet-error: bad_request');
    expect(reply).toContain(message);
    await expect.poll(refusals, { timeout: 2000 }).not.toHaveLength(0);
    const refused = refusals();
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ direction: 'inbound', caller: WEB, error: 'bad_request' });
    expect(refused[0]!.peerSerial).toMatch(/^[0-9A-F]+$/);
    expect(await deniedBadRequest(b.admin, 'web')).toBe(before + 1);
    expect(app.requests.map((r) => r.url)).not.toContain(path);
  });
});
