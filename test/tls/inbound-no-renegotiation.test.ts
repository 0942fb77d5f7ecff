// The inbound mTLS listener with minTlsVersion TLSv1.2 refuses TLS 1.2 renegotiation (HTTP/1.1 and h2) and keeps serving new connections.
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HttpListener } from '../../src/listener/http-listener.ts';
import { listenInbound } from '../../src/listener/inbound-listener.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { TlsMetrics } from '../../src/telemetry/tls-metrics.ts';
import { FilesTlsSource } from '../../src/tls/files-source.ts';
import { MeshTls } from '../../src/tls/mesh-tls.ts';
import { captureLogger, makePki, type TestPki, tlsRequest } from './tls-helpers.ts';

let pki: TestPki;
let tls: MeshTls;
let listener: HttpListener;
let web: { certPem: string; keyPem: string };
/** Requests the inbound handler was given. */
let served = 0;

beforeAll(async () => {
  pki = await makePki();
  const orders = await pki.write('orders');
  web = await pki.issue('web');
  const { logger } = captureLogger();
  const metrics = new Metrics({ processMetrics: false });
  const tlsMetrics = new TlsMetrics(metrics.registry);
  const source = new FilesTlsSource({
    paths: { cert: orders.cert, key: orders.key, ca: pki.caFile },
    trustDomain: pki.trustDomain,
    logger,
    metrics: tlsMetrics,
    pollMs: 0,
  });
  tls = new MeshTls({ source, metrics: tlsMetrics, logger, minVersion: 'TLSv1.2' });
  await tls.start();
  listener = await listenInbound('127.0.0.1', 0, tls, (_req, res) => {
    served++;
    res.end('ok');
  });
});

afterAll(async () => {
  listener?.stopAccepting();
  listener?.destroy();
  await tls?.stop();
});

/** What one TLS 1.2 connection got when the caller asked to renegotiate `times` times, then sent a request. */
interface Outcome {
  /** Renegotiations that completed (callback without error). */
  renegotiated: number;
  /** Whether the request after them was answered (HTTP/1.1: a 200; h2: the session stayed open). */
  served: boolean;
}

async function renegotiate(alpn: 'http/1.1' | 'h2', times: number): Promise<Outcome> {
  const socket: TLSSocket = connect({
    host: '127.0.0.1',
    port: listener.port,
    ca: pki.ca.certPem,
    cert: web.certPem,
    key: web.keyPem,
    maxVersion: 'TLSv1.2',
    ALPNProtocols: [alpn],
    checkServerIdentity: () => undefined,
  });
  socket.on('error', () => undefined);
  const closed = new Promise<boolean>((r) => socket.once('close', () => r(true)));
  await new Promise((r) => socket.once('secureConnect', r));
  expect({ protocol: socket.getProtocol(), alpn: socket.alpnProtocol }).toEqual({
    protocol: 'TLSv1.2',
    alpn,
  });
  socket.setEncoding('utf8');
  let reply = '';
  socket.on('data', (d: string) => (reply += d));
  let renegotiated = 0;
  for (let i = 0; i < times; i++) {
    const ok = await Promise.race([
      new Promise<boolean>((r) => {
        const asked = socket.renegotiate({ rejectUnauthorized: false }, (err) => r(err === null));
        if (!asked) r(false);
      }),
      closed.then(() => false),
      new Promise<boolean>((r) => setTimeout(r, 2000, false)),
    ]);
    if (!ok) break;
    renegotiated++;
  }
  if (!socket.destroyed) {
    socket.write(
      alpn === 'h2'
        ? 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
        : 'GET /reneg HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n',
    );
  }
  const gone = await Promise.race([closed, new Promise<boolean>((r) => setTimeout(r, 1000, false))]);
  socket.destroy();
  return { renegotiated, served: alpn === 'h2' ? !gone : reply.startsWith('HTTP/1.1 200') };
}

describe('inbound mTLS, TLS 1.2 renegotiation', () => {
  it('is refused over HTTP/1.1 and h2: no renegotiation completes, nothing is served on that connection', async () => {
    const before = served;
    expect(await renegotiate('http/1.1', 1)).toEqual({ renegotiated: 0, served: false });
    expect(await renegotiate('h2', 1)).toEqual({ renegotiated: 0, served: false });
    expect(served).toBe(before);
  });

  it('new TLS 1.2 and 1.3 connections are still served', async () => {
    const reply = await tlsRequest(listener.port, { ca: pki.ca.certPem, cert: web.certPem, key: web.keyPem });
    expect({ status: reply.status, body: reply.body }).toEqual({ status: 200, body: 'ok' });
    const before = served;
    const direct = await renegotiate('http/1.1', 0);
    expect(direct).toEqual({ renegotiated: 0, served: true });
    expect(served).toBe(before + 1);
  });
});
