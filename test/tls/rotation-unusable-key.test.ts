// Certificate files rotated to a set that fits together but TLS refuses (an RSA-512 key): refused and counted, the served and reported certificate stay the valid one.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { TlsMetrics } from '../../src/telemetry/tls-metrics.ts';
import { writeLeaf } from '../../src/tls/dev-ca.ts';
import { FilesTlsSource } from '../../src/tls/files-source.ts';
import { MeshTls } from '../../src/tls/mesh-tls.ts';
import { leafExt } from './openssl-certs.ts';
import { expectRefusedRotation, type RotationMesh, rotationMesh } from './refused-rotation.ts';
import { captureLogger, makePki, type TestPki, tempDir } from './tls-helpers.ts';

let pki: TestPki;
let mesh: RotationMesh;

beforeAll(async () => {
  pki = await makePki();
  mesh = await rotationMesh(pki);
});

afterAll(async () => {
  await mesh?.close();
});

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

describe('rotation to a key TLS refuses (source files)', () => {
  it('is refused at once, logged and counted; the source and the listener keep the valid certificate; a good set after it applies', async () => {
    // Waiting would not make it usable: refused without the settle retries (3 s).
    await expectRefusedRotation(
      mesh,
      rsa512Leaf('orders'),
      /^tls\.cert: .*orders\.pem: .*key too small/,
      2500,
    );
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
