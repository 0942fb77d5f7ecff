// `meshlet certs init|issue` through the real CLI: files, modes, SPIFFE IDs, and a handshake with what they made.
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTlsFiles } from '../../src/tls/certificate-info.ts';
import { runCli } from '../helpers/meshlet.ts';
import { tempDir } from './tls-helpers.ts';

describe('meshlet certs', () => {
  it('init makes a CA, issue makes leaves that load and verify against it', async () => {
    const dir = tempDir();
    const caDir = join(dir, 'ca');
    const init = await runCli(['certs', 'init', '--trust-domain', 'mesh.local', '--out', caDir]);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(statSync(join(caDir, 'ca-key.pem')).mode & 0o777).toBe(0o600);
    const again = await runCli(['certs', 'init', '--trust-domain', 'mesh.local', '--out', caDir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/exists; pass --force/);

    const out = join(dir, 'certs');
    const issue = await runCli(['certs', 'issue', '--service', 'web', '--ca', caDir, '--out', out]);
    expect(issue.code).toBe(0);
    expect(issue.stdout).toMatch(/^spiffe:\/\/mesh\.local\/svc\/web/);
    const loaded = await loadTlsFiles({
      cert: join(out, 'web.pem'),
      key: join(out, 'web-key.pem'),
      ca: join(caDir, 'ca.pem'),
    });
    expect(loaded.cert.spiffeId).toBe('spiffe://mesh.local/svc/web');
    expect(
      new X509Certificate(readFileSync(join(out, 'web.pem'))).publicKey.asymmetricKeyDetails?.namedCurve,
    ).toBe('prime256v1');

    const consulForm = await runCli([
      'certs',
      'issue',
      '--service',
      'orders',
      '--ca',
      caDir,
      '--out',
      out,
      '--datacenter',
      'dc1',
    ]);
    expect(consulForm.code).toBe(0);
    expect(consulForm.stdout).toMatch(/^spiffe:\/\/mesh\.local\/ns\/default\/dc\/dc1\/svc\/orders/);
  });

  it('bad input exits 2 with one line', async () => {
    const bad = await runCli(['certs', 'init', '--trust-domain', 'Bad Domain', '--out', tempDir()]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--trust-domain/);
    const missing = await runCli(['certs', 'issue', '--service', 'web', '--out', tempDir()]);
    expect(missing.code).toBe(2);
  });
});
