// Certificate files rotated to a set that fits together but TLS refuses (an RSA-512 key): refused and counted, the served and reported certificate stay the valid one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { TlsMetrics } from '../../src/telemetry/tls-metrics.ts';
import { writeLeaf } from '../../src/tls/dev-ca.ts';
import { FilesTlsSource } from '../../src/tls/files-source.ts';
import { MeshTls } from '../../src/tls/mesh-tls.ts';
import { rsa512Leaf } from './openssl-certs.ts';
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

/** {@link rsa512Leaf} for `service`, signed by the test CA. */
const rsa512 = (service: string) => rsa512Leaf(tempDir(), pki.ca, service);

describe('rotation to a key TLS refuses (source files)', () => {
  it('is refused at once, logged and counted; the source and the listener keep the valid certificate; a good set after it applies', async () => {
    // Waiting would not make it usable: refused without the settle retries (3 s).
    await expectRefusedRotation(mesh, rsa512('orders'), /^tls\.cert: .*orders\.pem: .*key too small/, 2500);
  });

  it('at start, such a set fails naming the files (not a bare OpenSSL error)', async () => {
    const dir = tempDir();
    const paths = await writeLeaf(dir, 'orders', rsa512('orders'));
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
