// Inbound mTLS against hostile handshakes: a slow ClientHello, old TLS versions, TLS 1.2 without forward secrecy, and client certificates that verify but must not pass (a CA as a leaf, a serverAuth-only leaf).
import { writeFileSync } from 'node:fs';
import { createServer as createNetServer, connect as netConnect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions, type SecureVersion } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HttpListener } from '../../src/listener/http-listener.ts';
import { listenInbound } from '../../src/listener/inbound-listener.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { TlsMetrics } from '../../src/telemetry/tls-metrics.ts';
import { FilesTlsSource } from '../../src/tls/files-source.ts';
import { MeshTls } from '../../src/tls/mesh-tls.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  captureLogger,
  makePki,
  metricValue,
  startInbound,
  type TestInbound,
  type TestPki,
  tempDir,
  tlsRequest,
} from './tls-helpers.ts';
import { CA_EXT, leafExt, opensslCert, opensslChain } from './openssl-certs.ts';

/** An inbound listener over `files` with `minVersion`, answering 200 itself. */
async function inboundOver(
  files: { cert: string; key: string; ca: string },
  minVersion: SecureVersion,
): Promise<{ listener: HttpListener; metrics: Metrics; close(): Promise<void> }> {
  const { logger } = captureLogger();
  const metrics = new Metrics({ processMetrics: false });
  const tlsMetrics = new TlsMetrics(metrics.registry);
  const source = new FilesTlsSource({ paths: files, logger, metrics: tlsMetrics, pollMs: 0 });
  const tls = new MeshTls({ source, metrics: tlsMetrics, logger, minVersion });
  await tls.start();
  const listener = await listenInbound('127.0.0.1', 0, tls, (_req, res) => res.end('ok'));
  return {
    listener,
    metrics,
    async close() {
      listener.stopAccepting();
      listener.destroy();
      await tls.stop();
    },
  };
}

/** Opens one TLS connection: the protocol and cipher it agreed on, or the client's error code. */
function handshake(port: number, options: ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, checkServerIdentity: () => undefined, ...options });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, 5000);
    s.on('secureConnect', () => {
      clearTimeout(timer);
      resolve(`${s.getProtocol()} ${s.getCipher().name}`);
      s.destroy();
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(`error ${err.code ?? err.message}`);
    });
  });
}

/** The bytes of a real ClientHello, as node:tls sends it first. */
function captureClientHello(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = createNetServer((s) => {
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const c = tlsConnect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1' });
      c.on('error', () => undefined);
      setTimeout(() => reject(new Error('no ClientHello')), 5000).unref();
    });
  });
}

let pki: TestPki;
let app: TestUpstream;

beforeAll(async () => {
  pki = await makePki();
  app = await startUpstream();
});
afterAll(async () => {
  await app?.close();
});

const failed = (m: Metrics, reason: string) =>
  metricValue(m, 'meshlet_tls_handshakes_total', { direction: 'inbound', result: 'failed', reason });

describe('inbound: a client that drags out the handshake', () => {
  it('a ClientHello sent a byte at a time is cut at headersTimeout (a deadline, not an idle timer), counted as timeout', async () => {
    const b = await startInbound(pki, { service: 'orders', appPort: app.port, headersTimeoutMs: 600 });
    try {
      const hello = await captureClientHello();
      const before = await failed(b.metrics, 'timeout');
      const started = Date.now();
      // One byte every 100 ms: the socket is never idle for 600 ms, and the hello would take minutes.
      const closedAfter = await new Promise<number>((resolve) => {
        const s = netConnect(b.port, '127.0.0.1');
        let i = 0;
        const drip = setInterval(() => {
          if (i < hello.length - 1) s.write(hello.subarray(i, ++i));
        }, 100);
        const guard = setTimeout(() => s.destroy(), 8000);
        s.on('close', () => {
          clearInterval(drip);
          clearTimeout(guard);
          resolve(Date.now() - started);
        });
        s.on('error', () => undefined);
      });
      expect(closedAfter).toBeGreaterThanOrEqual(500);
      expect(closedAfter).toBeLessThan(3000);
      expect(await failed(b.metrics, 'timeout')).toBe(before + 1);
      expect(await failed(b.metrics, 'protocol')).toBe(0);
      // A client that opens TCP and sends nothing fares the same.
      const silentAfter = await new Promise<number>((resolve) => {
        const t0 = Date.now();
        const s = netConnect(b.port, '127.0.0.1');
        const guard = setTimeout(() => s.destroy(), 8000);
        s.on('close', () => {
          clearTimeout(guard);
          resolve(Date.now() - t0);
        });
        s.on('error', () => undefined);
      });
      expect(silentAfter).toBeLessThan(3000);
      expect(await failed(b.metrics, 'timeout')).toBe(before + 2);
    } finally {
      await b.close();
    }
  }, 20_000);
});

describe('inbound: protocol versions and ciphers', () => {
  it('with minTlsVersion TLSv1.2: TLS 1.0 and 1.1 fail the handshake; TLS 1.2 without ECDHE or without an AEAD cipher is refused', async () => {
    // RSA certificates: static-RSA key exchange (no forward secrecy) needs an RSA server key.
    const dir = tempDir();
    const ca = opensslCert(dir, 'rsa-ca', CA_EXT, undefined, 'rsa');
    const orders = opensslCert(dir, 'orders', leafExt('orders'), ca, 'rsa');
    const web = opensslCert(dir, 'web', leafExt('web'), ca, 'rsa');
    const b = await inboundOver({ cert: orders.cert, key: orders.key, ca: ca.cert }, 'TLSv1.2');
    try {
      const as = { ca: ca.certPem, cert: web.certPem, key: web.keyPem };
      const tls12 = (ciphers: string) =>
        handshake(b.listener.port, { ...as, ciphers, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
      for (const v of ['TLSv1', 'TLSv1.1'] as const) {
        const got = await handshake(b.listener.port, {
          ...as,
          ciphers: 'ALL:@SECLEVEL=0',
          minVersion: v,
          maxVersion: v,
        });
        expect({ v, got }).toEqual({ v, got: 'error ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
      }
      for (const weak of ['AES128-GCM-SHA256', 'AES256-SHA', 'ECDHE-RSA-AES128-SHA', 'ARIA128-GCM-SHA256']) {
        expect({ weak, got: await tls12(weak) }).toEqual({
          weak,
          got: 'error ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE',
        });
      }
      expect(await tls12('ECDHE-RSA-AES128-GCM-SHA256')).toBe('TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256');
      expect(await tls12('ECDHE-RSA-CHACHA20-POLY1305')).toBe('TLSv1.2 ECDHE-RSA-CHACHA20-POLY1305');
      expect(await handshake(b.listener.port, as)).toMatch(/^TLSv1\.3 TLS_AES_/);
      expect(await failed(b.metrics, 'protocol')).toBe(6);
    } finally {
      await b.close();
    }
  });

  it('with an EC certificate (meshlet certs): TLS 1.2 CBC suites are refused, ECDHE-ECDSA with GCM is taken', async () => {
    const orders = await pki.write('orders');
    const web = await pki.issue('web');
    const b = await inboundOver({ cert: orders.cert, key: orders.key, ca: pki.caFile }, 'TLSv1.2');
    try {
      const tls12 = (ciphers: string) =>
        handshake(b.listener.port, {
          ca: pki.ca.certPem,
          cert: web.certPem,
          key: web.keyPem,
          ciphers,
          maxVersion: 'TLSv1.2',
        });
      expect(await tls12('ECDHE-ECDSA-AES128-SHA')).toBe('error ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE');
      expect(await tls12('ECDHE-ECDSA-AES256-SHA384')).toBe('error ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE');
      expect(await tls12('ECDHE-ECDSA-AES128-GCM-SHA256')).toBe('TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256');
    } finally {
      await b.close();
    }
  });
});

describe('inbound: client certificates that chain to the bundle but must not pass', () => {
  let b: TestInbound;
  let caFiles: { cert: string; key: string };
  let dir: string;
  beforeAll(async () => {
    b = await startInbound(pki, { service: 'orders', appPort: app.port });
    dir = tempDir();
    caFiles = { cert: join(dir, 'ca.pem'), key: join(dir, 'ca.key') };
    writeFileSync(caFiles.cert, pki.ca.certPem);
    writeFileSync(caFiles.key, pki.ca.keyPem);
  });
  afterAll(async () => {
    await b?.close();
  });

  it('a CA certificate used as a leaf is no SVID (no_identity); a serverAuth-only leaf is refused (wrong_usage); the app sees nothing', async () => {
    const uri = 'subjectAltName=URI:spiffe://mesh.test/svc/web';
    const cases = {
      caAsLeaf: opensslCert(
        dir,
        'ca-leaf',
        `${uri}\n${CA_EXT}\nkeyUsage=critical,digitalSignature,keyCertSign`,
        caFiles,
      ),
      serverAuthOnly: opensslCert(dir, 'server-only', leafExt('web', 'serverAuth'), caFiles),
      noSan: opensslCert(dir, 'no-san', 'basicConstraints=critical,CA:FALSE', caFiles),
    };
    const before = {
      noIdentity: await failed(b.metrics, 'no_identity'),
      wrongUsage: await failed(b.metrics, 'wrong_usage'),
      other: await failed(b.metrics, 'other'),
    };
    const seen = app.requests.length;
    for (const [name, c] of Object.entries(cases)) {
      const r = await tlsRequest(b.port, {
        ca: pki.ca.certPem,
        cert: c.certPem,
        key: c.keyPem,
        path: `/${name}`,
      });
      expect({ name, status: r.status }).toEqual({ name, status: undefined });
      expect(r.error).toBeDefined();
    }
    expect(app.requests.length).toBe(seen);
    expect(await failed(b.metrics, 'no_identity')).toBe(before.noIdentity + 2);
    expect(await failed(b.metrics, 'wrong_usage')).toBe(before.wrongUsage + 1);
    expect(await failed(b.metrics, 'other')).toBe(before.other);
  });

  it('what a verified chain may hold is taken: clientAuth-only EKU, a 16 KiB extension, ten intermediates', async () => {
    const clientOnly = opensslCert(dir, 'client-only', leafExt('web', 'clientAuth'), caFiles);
    const huge = opensslCert(dir, 'huge', `${leafExt('web')}\nnsComment=${'A'.repeat(16_000)}`, caFiles);
    expect(huge.certPem.length).toBeGreaterThan(16 * 1024);
    for (const c of [clientOnly, huge]) {
      const r = await tlsRequest(b.port, { ca: pki.ca.certPem, cert: c.certPem, key: c.keyPem });
      expect(r.status).toBe(200);
    }
    // The dev CA has pathlen 0: a chain of ten intermediates needs its own root (and listener).
    const { root, issuer, intermediatesPem } = opensslChain(dir, 10);
    const orders = opensslCert(dir, 'orders-deep', leafExt('orders'), root);
    const web = opensslCert(dir, 'web-deep', leafExt('web'), issuer);
    const deep = await inboundOver({ cert: orders.cert, key: orders.key, ca: root.cert }, 'TLSv1.3');
    try {
      const r = await tlsRequest(deep.listener.port, {
        ca: root.certPem,
        cert: web.certPem + intermediatesPem,
        key: web.keyPem,
      });
      expect(r.status).toBe(200);
    } finally {
      await deep.close();
    }
  }, 30_000);
});
