// A Consul or Redis client TLS set OpenSSL refuses (an RSA-512 key): `config check` refuses it (exit 2) and `meshlet run` stops at start (exit 1) with the same line naming the files; a CA-only set still passes.
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cliToEnd as cli, type DevPki } from './cli.ts';
import { configDir, KEY_TOO_SMALL, LISTENERS, weakLeaf } from './unusable-tls.ts';

/** A Consul registry reached over TLS with client files `tls` (nothing listens on port 9). */
function consulConfig(tls: Record<string, string>): string {
  return stringify({
    listeners: LISTENERS,
    registry: { type: 'consul', consul: { address: 'https://127.0.0.1:9', tls } },
  });
}

/** A Redis registry reached over TLS with client files `tls` (nothing listens on port 9). */
function redisConfig(tls: Record<string, string>): string {
  return stringify({
    listeners: LISTENERS,
    registry: { type: 'redis', redis: { url: 'rediss://127.0.0.1:9', tls } },
  });
}

let pki: DevPki;
/** An RSA-512 leaf for `web`, issued by `pki.ca`. */
let weak: { certPem: string; keyPem: string };

beforeAll(async () => {
  ({ pki, weak } = await weakLeaf());
});

const SET = { ca: './reg-ca.pem', cert: './reg.pem', key: './reg-key.pem' };

describe.each([
  ['consul', consulConfig],
  ['redis', redisConfig],
] as const)('registry.%s.tls', (type, config) => {
  it('an RSA-512 client key: config check exit 2 and run exit 1, one line naming the three files', async () => {
    const { dir, file } = configDir(config(SET), {
      'reg.pem': weak.certPem,
      'reg-key.pem': weak.keyPem,
      'reg-ca.pem': pki.ca.certPem,
    });
    const line =
      `registry.${type}.tls.cert: ${dir}/reg.pem: TLS cannot use it with registry.${type}.tls.key ` +
      `${dir}/reg-key.pem and registry.${type}.tls.ca ${dir}/reg-ca.pem: ${KEY_TOO_SMALL}`;
    const check = await cli(['config', 'check', file], dir);
    expect([check.code, check.stderr]).toEqual([2, `meshlet: invalid config: ${file}: ${line}\n`]);
    const run = await cli(['run', '--config', file], dir);
    expect([run.code, run.stderr]).toEqual([1, `meshlet: cannot start: ${line}\n`]);
  });

  it('an RSA-512 client key without a CA: the line names the certificate and key only', async () => {
    const { dir, file } = configDir(config({ cert: SET.cert, key: SET.key }), {
      'reg.pem': weak.certPem,
      'reg-key.pem': weak.keyPem,
    });
    const line =
      `registry.${type}.tls.cert: ${dir}/reg.pem: TLS cannot use it with registry.${type}.tls.key ` +
      `${dir}/reg-key.pem: ${KEY_TOO_SMALL}`;
    const check = await cli(['config', 'check', file], dir);
    expect([check.code, check.stderr]).toEqual([2, `meshlet: invalid config: ${file}: ${line}\n`]);
  });

  it('a CA-only set (no client certificate) and a usable client pair pass config check', async () => {
    const caOnly = configDir(config({ ca: SET.ca }), { 'reg-ca.pem': pki.ca.certPem });
    const checkCa = await cli(['config', 'check', caOnly.file], caOnly.dir);
    expect([checkCa.code, checkCa.stderr]).toEqual([0, '']);
    const usable = configDir(config(SET), {
      'reg.pem': pki.leaf.certPem,
      'reg-key.pem': pki.leaf.keyPem,
      'reg-ca.pem': pki.ca.certPem,
    });
    const checkUsable = await cli(['config', 'check', usable.file], usable.dir);
    expect([checkUsable.code, checkUsable.stderr]).toEqual([0, '']);
  });
});
