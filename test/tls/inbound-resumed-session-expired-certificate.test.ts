// A caller whose certificate expired cannot get in by resuming a TLS session from before the expiry.
import { X509Certificate } from 'node:crypto';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, metricValue, startInbound, type TestInbound, type TestPki } from './tls-helpers.ts';

let pki: TestPki;
let app: TestUpstream;
let b: TestInbound;

beforeAll(async () => {
  pki = await makePki();
  app = await startUpstream();
  b = await startInbound(pki, { service: 'orders', appPort: app.port, allow: ['web'] });
});

afterAll(async () => {
  await b?.close();
  await app?.close();
});

/** What one connection got: the status line, whether the TLS session was resumed, the session to resume later. */
interface Attempt {
  statusLine: string;
  resumed: boolean;
  session: Buffer | undefined;
}

/** One GET over a fresh TLS connection presenting `cert`, offering `session` for resumption when given. */
function attempt(opts: { cert: string; key: string; session?: Buffer }): Promise<Attempt> {
  return new Promise((resolve) => {
    let session: Buffer | undefined;
    let resumed = false;
    let data = '';
    const socket: TLSSocket = connect({
      host: '127.0.0.1',
      port: b.port,
      ca: pki.ca.certPem,
      cert: opts.cert,
      key: opts.key,
      session: opts.session,
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: () => undefined,
    });
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('session', (s: Buffer) => {
      session = s;
    });
    socket.once('secureConnect', () => {
      resumed = socket.isSessionReused();
      socket.write('GET /resume HTTP/1.1\r\nhost: orders\r\nconnection: close\r\n\r\n');
    });
    socket.on('data', (d: Buffer) => {
      data += d.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.once('close', () => resolve({ statusLine: data.split('\r\n')[0] ?? '', resumed, session }));
  });
}

describe('inbound mTLS and TLS session resumption', () => {
  it('a session from before the caller’s certificate expired does not let it in after the expiry', async () => {
    // X.509 times have second precision: expire 3 s from now.
    const web = await pki.issue('web', { notAfter: new Date(Date.now() + 3000) });
    const first = await attempt({ cert: web.certPem, key: web.keyPem });
    expect(first.statusLine).toBe('HTTP/1.1 200 OK');
    expect(first.session).toBeDefined();

    await new Promise((r) =>
      setTimeout(r, Math.max(0, new X509Certificate(web.certPem).validToDate.getTime() - Date.now()) + 1000),
    );
    const before = await metricValue(b.metrics, 'meshlet_tls_handshakes_total', {
      direction: 'inbound',
      result: 'failed',
      reason: 'expired',
    });
    const seenBefore = app.requests.length;

    // The same caller, certificate now expired, offers the session it was given before.
    const later = await attempt({ cert: web.certPem, key: web.keyPem, session: first.session });

    expect({ resumed: later.resumed, statusLine: later.statusLine }).toEqual({
      resumed: false,
      statusLine: '',
    });
    expect(app.requests.length).toBe(seenBefore);
    expect(
      await metricValue(b.metrics, 'meshlet_tls_handshakes_total', {
        direction: 'inbound',
        result: 'failed',
        reason: 'expired',
      }),
    ).toBe(before + 1);
  });

  it('a caller with a valid certificate is served on every new connection (full handshakes)', async () => {
    const web = await pki.issue('web');
    const first = await attempt({ cert: web.certPem, key: web.keyPem });
    const second = await attempt({ cert: web.certPem, key: web.keyPem, session: first.session });
    expect([first.statusLine, second.statusLine]).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(second.resumed).toBe(false);
  });
});
