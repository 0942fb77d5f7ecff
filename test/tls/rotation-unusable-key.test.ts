// Certificate files rotated to a set that fits together but TLS refuses (an RSA-512 key): refused and counted, the served and reported certificate stay the valid one.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { TlsMetrics } from '../../src/telemetry/tls-metrics.ts';
import { writeLeaf } from '../../src/tls/dev-ca.ts';
import { FilesTlsSource } from '../../src/tls/files-source.ts';
import { MeshTls } from '../../src/tls/mesh-tls.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { leafExt } from './openssl-certs.ts';
import {
  captureLogger,
  makePki,
  metricValue,
  startInbound,
  startOutbound,
  type TestInbound,
  type TestOutbound,
  type TestPki,
  tempDir,
  tlsRequest,
} from './tls-helpers.ts';

let pki: TestPki;
let app: TestUpstream;
let b: TestInbound;
let a: TestOutbound;

beforeAll(async () => {
  pki = await makePki();
  app = await startUpstream();
  b = await startInbound(pki, { service: 'orders', appPort: app.port, allow: ['web'] });
  a = await startOutbound(pki, 'web', { orders: [{ port: b.port }] });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await app?.close();
});

const RELOADED = 'tls certificate reloaded';
const FAILED = 'tls certificate reload failed; keeping the current certificate';

/**
 * A leaf for `service` signed by the test CA whose key is RSA-512: it parses, matches its
 * certificate and chains to the CA, but OpenSSL refuses it at the default security level.
 */
function rsa512Leaf(service: string): { certPem: string; keyPem: string; serialNumber: string } {
  const dir = tempDir();
  const q = { stdio: 'ignore' as const };
  const [caCert, caKey, cfg, key, csr, cert] = ['ca.pem', 'ca.key', 'x.cnf', 'x.key', 'x.csr', 'x.pem'].map(
    (f) => join(dir, f),
  ) as [string, string, string, string, string, string];
  writeFileSync(caCert, pki.ca.certPem);
  writeFileSync(caKey, pki.ca.keyPem);
  writeFileSync(cfg, `[req]\ndistinguished_name=dn\n[dn]\n[ext]\n${leafExt(service)}\n`);
  execFileSync('openssl', ['genrsa', '-out', key, '512'], q);
  execFileSync(
    'openssl',
    ['req', '-new', '-key', key, '-subj', `/CN=${service}`, '-out', csr, '-config', cfg],
    q,
  );
  execFileSync(
    'openssl',
    ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', '512', '-days', '1'].concat([
      '-extfile',
      cfg,
      '-extensions',
      'ext',
      '-out',
      cert,
    ]),
    q,
  );
  return { certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8'), serialNumber: '0200' };
}

/** Waits until B logged a reload outcome after `from` lines, and returns that line. */
async function nextReloadOutcome(from: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 6000;
  for (;;) {
    const hit = b.logs.slice(from).find((l) => l.msg === RELOADED || l.msg === FAILED);
    if (hit !== undefined) return hit;
    if (Date.now() > deadline) throw new Error('no reload outcome logged');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function viaA(): Promise<number> {
  const res = await request(`${a.url}/orders/1`, { headers: { host: 'orders' } });
  await res.body.text();
  return res.statusCode;
}

const failedReloads = () =>
  metricValue(b.metrics, 'meshlet_tls_certificate_reloads_total', { source: 'files', result: 'failed' });

describe('rotation to a key TLS refuses (source files)', () => {
  it('is refused at once, logged and counted; the source and the listener keep the valid certificate; a good set after it applies', async () => {
    expect(await viaA()).toBe(200);
    const valid = b.tls.material.cert;
    const failedBefore = await failedReloads();

    const weak = rsa512Leaf('orders');
    let from = b.logs.length;
    const started = Date.now();
    await writeLeaf(pki.dir, 'orders', weak);
    const outcome = await nextReloadOutcome(from);

    expect({
      msg: outcome.msg,
      served: b.tls.material.cert.serialNumber,
      reported: b.tls.source.current().cert.serialNumber,
    }).toEqual({ msg: FAILED, served: valid.serialNumber, reported: valid.serialNumber });
    expect(String(outcome.reason)).toMatch(/^tls\.cert: .*orders\.pem: .*key too small/);
    // Waiting would not make it usable: refused without the settle retries (3 s).
    expect(Date.now() - started).toBeLessThan(2500);
    expect(await failedReloads()).toBe(failedBefore + 1);
    expect(
      await metricValue(b.metrics, 'meshlet_tls_certificate_expiry_timestamp_seconds', { source: 'files' }),
    ).toBe(Math.floor(valid.notAfter.getTime() / 1000));

    // New connections, from a peer meshlet and directly, still get the valid certificate.
    b.listener.closeIdleConnections();
    expect(await viaA()).toBe(200);
    const web = await pki.issue('web');
    const direct = await tlsRequest(b.port, { ca: pki.ca.certPem, cert: web.certPem, key: web.keyPem });
    expect({ status: direct.status, serverSerial: direct.serverSerial }).toEqual({
      status: 200,
      serverSerial: valid.serialNumber,
    });

    // The next good certificate is applied as usual.
    const fresh = await pki.issue('orders');
    from = b.logs.length;
    await writeLeaf(pki.dir, 'orders', fresh);
    expect((await nextReloadOutcome(from)).msg).toBe(RELOADED);
    expect(b.tls.material.cert.serialNumber).toBe(fresh.serialNumber);
    expect(b.tls.source.current().cert.serialNumber).toBe(fresh.serialNumber);
    expect(await failedReloads()).toBe(failedBefore + 1);
    b.listener.closeIdleConnections();
    expect(await viaA()).toBe(200);
  });

  it('at start, such a set fails naming the files (not a bare OpenSSL error)', async () => {
    const dir = tempDir();
    const paths = await writeLeaf(dir, 'orders', rsa512Leaf('orders'));
    const { logger } = captureLogger();
    const tlsMetrics = new TlsMetrics(new Metrics({ processMetrics: false }).registry);
    const source = new FilesTlsSource({
      paths: { cert: paths.cert, key: paths.key, ca: pki.caFile },
      logger,
      metrics: tlsMetrics,
      pollMs: 0,
    });
    const tls = new MeshTls({ source, metrics: tlsMetrics, logger });
    try {
      await expect(tls.start()).rejects.toThrow(/^tls\.cert: .*orders\.pem: .*key too small/);
    } finally {
      await tls.stop();
    }
  });
});
