// The gateway's TLS listener refuses TLS 1.2 renegotiation (HTTP/1.1 and h2 connections) and keeps serving new connections.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, tempDir } from '../tls/tls-helpers.ts';

describe('gateway TLS renegotiation', () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let port: number;
  let ca: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    const pki = await makePki();
    ca = pki.ca.certPem;
    const leaf = await pki.issue('gw');
    const dir = tempDir();
    writeFileSync(join(dir, 'gw.pem'), leaf.certPem);
    writeFileSync(join(dir, 'gw.key'), leaf.keyPem);
    m = await startMeshlet({
      listeners: {
        gateway: {
          address: '127.0.0.1',
          port: 0,
          tls: { cert: join(dir, 'gw.pem'), key: join(dir, 'gw.key') },
        },
      },
      registry: { endpoints: { web: [upstream.endpoint] } },
      gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'web' }] },
    });
    port = m.daemon.addresses().gateway!.port;
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  /** Connects with TLS 1.2, asks for a renegotiation and sends a request: 'renegotiated' when it was served, else 'refused'. */
  async function renegotiate(alpn: string): Promise<'renegotiated' | 'refused'> {
    const socket: TLSSocket = connect({
      host: '127.0.0.1',
      port,
      ca,
      maxVersion: 'TLSv1.2',
      ALPNProtocols: [alpn],
      checkServerIdentity: () => undefined,
    });
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('secureConnect', r));
    expect(socket.alpnProtocol).toBe(alpn);
    // The renegotiation, then a request on the same connection: answered only if it went through.
    socket.setEncoding('utf8');
    let reply = '';
    socket.on('data', (d: string) => (reply += d));
    const closed = new Promise((r) => socket.once('close', r));
    socket.renegotiate({ rejectUnauthorized: false }, () => undefined);
    socket.write(
      alpn === 'h2'
        ? 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
        : 'GET /reneg HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n',
    );
    const gone = await Promise.race([
      closed.then(() => true),
      new Promise((r) => setTimeout(r, 1000, false)),
    ]);
    // HTTP/1.1: the upstream's answer (a refusal is a 400); h2 (whose server preface went out at
    // once): the session still open.
    const served = alpn === 'h2' ? gone === false : reply.startsWith('HTTP/1.1 200');
    const outcome = served ? 'renegotiated' : 'refused';
    socket.destroy();
    return outcome;
  }

  it('is refused over HTTP/1.1 and h2; new connections are still served', async () => {
    expect(await renegotiate('http/1.1')).toBe('refused');
    expect(await renegotiate('h2')).toBe('refused');
    const dispatcher = new Agent({ connect: { ca, checkServerIdentity: () => undefined } });
    try {
      const res = await request(`https://127.0.0.1:${port}/after`, { dispatcher });
      await res.body.text();
      expect(res.statusCode).toBe(200);
    } finally {
      await dispatcher.close();
    }
  });
});
