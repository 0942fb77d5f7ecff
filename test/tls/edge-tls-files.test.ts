// TLS material from files (`tls.source: files`) that cannot be used: refused at start with a line naming the key, and while running the previous material keeps serving.
import { execFileSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadTlsFiles } from '../../src/tls/certificate-info.ts';
import { runCli, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream } from '../helpers/upstream-server.ts';
import { leafExt, opensslCert, opensslChain } from './openssl-certs.ts';
import { makePki, metricValue, startInbound, tempDir, tlsRequest } from './tls-helpers.ts';

/** The message `loadTlsFiles` refuses `paths` with, or 'loaded'. */
async function refusal(paths: { cert: string; key: string; ca: string }): Promise<string> {
  try {
    await loadTlsFiles(paths);
    return 'loaded';
  } catch (err) {
    return (err as Error).message;
  }
}

describe('tls files that cannot be used', () => {
  it('each is refused with one line naming the key and the file', async () => {
    const pki = await makePki();
    const dir = tempDir();
    const orders = await pki.write('orders');
    const web = await pki.write('web');
    const empty = join(dir, 'empty.pem');
    writeFileSync(empty, '');
    const encrypted = join(dir, 'encrypted-key.pem');
    execFileSync('openssl', ['pkcs8', '-topk8', '-in', orders.key, '-out', encrypted, '-passout', 'pass:x']);
    const caFirst = join(dir, 'ca-first.pem');
    writeFileSync(caFirst, pki.ca.certPem + readFileSync(orders.cert, 'utf8'));
    const ok = { cert: orders.cert, key: orders.key, ca: pki.caFile };
    expect(await refusal({ ...ok, key: web.key })).toBe(
      `tls.key does not match tls.cert (${web.key}, ${orders.cert})`,
    );
    expect(await refusal({ ...ok, key: encrypted })).toBe(
      `tls.key: ${encrypted}: encrypted private keys are not supported`,
    );
    expect(await refusal({ ...ok, cert: empty })).toBe(`tls.cert: ${empty}: not a PEM certificate`);
    expect(await refusal({ ...ok, key: empty })).toBe(`tls.key: ${empty}: not a PEM private key`);
    expect(await refusal({ ...ok, ca: empty })).toBe(`tls.ca: ${empty}: not a PEM certificate`);
    // A chain file in the wrong order says so, rather than that the key does not match.
    expect(await refusal({ ...ok, cert: caFirst })).toBe(
      `tls.cert: ${caFirst}: certificate 2 of 2 is the one tls.key belongs to: ` +
        "put this instance's certificate first, then its intermediates",
    );
  });

  it('a chain file with ten intermediates loads (the handshake takes such chains from peers too)', async () => {
    const dir = tempDir();
    const { root, issuer, intermediatesPem } = opensslChain(dir, 10);
    const orders = opensslCert(dir, 'orders', leafExt('orders'), issuer);
    const chain = join(dir, 'orders-chain.pem');
    writeFileSync(chain, orders.certPem + intermediatesPem);
    expect(await refusal({ cert: chain, key: orders.key, ca: root.cert })).toBe('loaded');
  }, 30_000);

  it('meshlet run with a certificate that is not PEM: exit 1, one line naming tls.cert and the file', async () => {
    const dir = tempDir();
    const bad = join(dir, 'orders.pem');
    writeFileSync(bad, 'garbage');
    const pki = await makePki();
    const orders = await pki.write('orders');
    const file = writeConfig(
      stringify({
        service: { name: 'orders', port: 9 },
        listeners: {
          outbound: { port: 0 },
          admin: { port: 0 },
          adminGrpc: { enabled: false },
          inbound: { address: '127.0.0.1', port: 0 },
        },
        registry: { endpoints: {} },
        tls: { source: 'files', cert: bad, key: orders.key, ca: pki.caFile },
      }),
    );
    const { code, stderr } = await runCli(['run', '--config', file]);
    expect(code).toBe(1);
    expect(stderr).toBe(`meshlet: cannot start: tls.cert: ${bad}: not a PEM certificate\n`);
  });
});

describe('tls files replaced by garbage while running', () => {
  it('the previous certificate keeps serving; the failure is counted and logged once as a warning', async () => {
    const pki = await makePki();
    const app = await startUpstream();
    const b = await startInbound(pki, { service: 'orders', appPort: app.port });
    try {
      const web = await pki.issue('web');
      const served = b.tls.material.cert.serialNumber;
      const certFile = join(pki.dir, 'orders.pem');
      const before = await metricValue(b.metrics, 'meshlet_tls_certificate_reloads_total', {
        source: 'files',
        result: 'failed',
      });
      // Atomically, as a rename: what cert-manager style writers do.
      const tmp = join(pki.dir, '.orders.pem.tmp');
      writeFileSync(tmp, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
      renameSync(tmp, certFile);
      const deadline = Date.now() + 8000;
      const failedNow = () =>
        metricValue(b.metrics, 'meshlet_tls_certificate_reloads_total', {
          source: 'files',
          result: 'failed',
        });
      while ((await failedNow()) === before && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(await failedNow()).toBe(before + 1);
      const lines = b.logs.filter(
        (l) => l.msg === 'tls certificate reload failed; keeping the current certificate',
      );
      expect(lines.length).toBe(1);
      expect(lines[0]!.level).toBe('warn');
      expect(lines[0]!.reason).toBe(`tls.cert: ${certFile}: not a PEM certificate`);
      const r = await tlsRequest(b.port, { ca: pki.ca.certPem, cert: web.certPem, key: web.keyPem });
      expect(r.status).toBe(200);
      expect(r.serverSerial).toBe(served);
    } finally {
      await b.close();
      await app.close();
    }
  }, 20_000);
});
