// A replaced gateway certificate pair OpenSSL refuses (an RSA-512 key) is logged naming the files, as start does, and the old certificate keeps serving.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { expect, it } from 'vitest';
import { createDevCa, issueLeaf } from '../../src/tls/dev-ca.ts';
import { startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream } from '../helpers/upstream-server.ts';
import { rsa512Leaf } from '../tls/openssl-certs.ts';

/** OpenSSL's reason for an RSA-512 key at its default security level. */
const KEY_TOO_SMALL = 'error:0A00018F:SSL routines::ee key too small';
const FAILED = 'gateway certificate reload failed; keeping the current certificate';

it('an RSA-512 pair written over the edge certificate is refused naming both files; the old one stays', async () => {
  const upstream = await startUpstream();
  const ca = await createDevCa({ trustDomain: 'gw.test' });
  const dir = tempDir('meshlet-gw-cert-reload-unusable-');
  const certFile = join(dir, 'gw.pem');
  const keyFile = join(dir, 'gw-key.pem');
  const first = await issueLeaf({ ca, service: 'first', trustDomain: 'gw.test' });
  writeFileSync(keyFile, first.keyPem);
  writeFileSync(certFile, first.certPem);
  const weak = rsa512Leaf(dir, ca, 'weak');
  const m = await startMeshlet({
    listeners: { gateway: { address: '127.0.0.1', port: 0, tls: { cert: certFile, key: keyFile } } },
    registry: { endpoints: { web: [upstream.endpoint] } },
    gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'web' }] },
  });
  const port = m.daemon.addresses().gateway!.port;
  /** The CN of the certificate a new connection is served. */
  const servedCn = () =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(
        { port, host: '127.0.0.1', ca: ca.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] },
        () => {
          resolve(String(socket.getPeerCertificate().subject.CN));
          socket.end();
        },
      );
      socket.on('error', reject);
    });
  try {
    expect(await servedCn()).toBe('first');
    writeFileSync(keyFile, weak.keyPem);
    writeFileSync(certFile, weak.certPem);
    const deadline = Date.now() + 8000;
    while (!m.logs.some((l) => l.msg === FAILED) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 25));
    const lines = m.logs.filter((l) => l.msg === FAILED);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0]!.reason).toBe(
      `listeners.gateway.tls.cert: ${certFile}: TLS cannot use it with ` +
        `listeners.gateway.tls.key ${keyFile}: ${KEY_TOO_SMALL}`,
    );
    expect(await servedCn()).toBe('first');
    expect(m.logs.some((l) => l.msg === 'gateway certificate reloaded')).toBe(false);
  } finally {
    await m.close();
    await upstream.close();
  }
}, 20_000);
