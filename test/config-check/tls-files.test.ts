// `config check` reads `tls.source: files` as `run` does: a missing, unparsable, mismatched, foreign or expired certificate set exits 2 naming the key and file; --offline skips it.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cli, devPki, runIn, tempDir, writeFiles } from './cli.ts';

/** An instance with an inbound mTLS listener whose files are `./certs/web.pem`, `./certs/web-key.pem`, `./certs/ca.pem`. */
const CONFIG = stringify({
  service: { name: 'web', port: 8080 },
  listeners: {
    outbound: { port: 0 },
    admin: { port: 0 },
    adminGrpc: { enabled: false },
    inbound: { address: '127.0.0.1', port: 0 },
  },
  tls: { source: 'files', cert: './certs/web.pem', key: './certs/web-key.pem', ca: './certs/ca.pem' },
});

/** A config directory holding CONFIG and the three files (`files` replaces some). */
async function configDir(
  files: Record<string, string> = {},
  leaf = {},
): Promise<{ dir: string; file: string }> {
  const pki = await devPki(leaf);
  const dir = tempDir();
  writeFiles(dir, {
    'meshlet.yaml': CONFIG,
    'certs/web.pem': pki.leaf.certPem,
    'certs/web-key.pem': pki.leaf.keyPem,
    'certs/ca.pem': pki.ca.certPem,
    ...files,
  });
  return { dir, file: join(dir, 'meshlet.yaml') };
}

describe('config check reads the tls files', () => {
  it('a good set: ok, and run starts on it', async () => {
    const { dir, file } = await configDir();
    const check = await cli(['config', 'check', file], dir);
    expect([check.code, check.stderr]).toEqual([0, '']);
    const m = await runIn(file, dir);
    expect(await m.stop()).toBe(0);
  });

  it('a missing certificate: the same line run stops with, as an invalid config (exit 2)', async () => {
    const { dir, file } = await configDir();
    const missing = join(dir, 'certs/nope.pem');
    writeFiles(dir, { 'meshlet.yaml': CONFIG.replace('./certs/web.pem', './certs/nope.pem') });
    const check = await cli(['config', 'check', file], dir);
    expect(check.code).toBe(2);
    expect(check.stderr).toBe(`meshlet: invalid config: ${file}: tls.cert: ${missing}: no such file\n`);
    const run = await cli(['run', '--config', file], dir);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`meshlet: cannot start: tls.cert: ${missing}: no such file\n`);
  });

  it('each unusable set names its key and file', async () => {
    const other = await devPki();
    const cases: [Record<string, string>, (dir: string) => string][] = [
      [
        { 'certs/web.pem': 'not a certificate\n' },
        (d) => `tls.cert: ${d}/certs/web.pem: not a PEM certificate`,
      ],
      [{ 'certs/web-key.pem': 'garbage\n' }, (d) => `tls.key: ${d}/certs/web-key.pem: not a PEM private key`],
      [{ 'certs/ca.pem': '' }, (d) => `tls.ca: ${d}/certs/ca.pem: not a PEM certificate`],
      [
        { 'certs/web-key.pem': other.leaf.keyPem },
        (d) => `tls.key does not match tls.cert (${d}/certs/web-key.pem, ${d}/certs/web.pem)`,
      ],
      [
        { 'certs/ca.pem': other.ca.certPem },
        (d) => `tls.cert: ${d}/certs/web.pem: not issued by tls.ca (${d}/certs/ca.pem)`,
      ],
    ];
    for (const [files, expected] of cases) {
      const { dir, file } = await configDir(files);
      const check = await cli(['config', 'check', file], dir);
      expect([check.code, check.stderr]).toEqual([2, `meshlet: invalid config: ${file}: ${expected(dir)}\n`]);
    }
  }, 60_000);

  it('an expired certificate is refused with its expiry', async () => {
    const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 - 3_600_000);
    const { dir, file } = await configDir({}, { notAfter });
    const check = await cli(['config', 'check', file], dir);
    expect([check.code, check.stderr]).toEqual([
      2,
      `meshlet: invalid config: ${file}: tls.cert: ${dir}/certs/web.pem: expired at ${notAfter.toISOString()}\n`,
    ]);
  });

  it('--offline skips the files (a deploy box without the keys), and still refuses a bad key', async () => {
    const dir = tempDir();
    writeFiles(dir, { 'meshlet.yaml': CONFIG });
    const file = join(dir, 'meshlet.yaml');
    const offline = await cli(['config', 'check', '--offline', file], dir);
    expect([offline.code, offline.stderr]).toEqual([0, '']);
    const online = await cli(['config', 'check', file], dir);
    expect(online.code).toBe(2);
    writeFiles(dir, { 'meshlet.yaml': `${CONFIG}bogus: 1\n` });
    const bad = await cli(['config', 'check', '--offline', file], dir);
    expect([bad.code, bad.stderr]).toEqual([2, `meshlet: invalid config: ${file}: bogus: unknown key\n`]);
  });
});
