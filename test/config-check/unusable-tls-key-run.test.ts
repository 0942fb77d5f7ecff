// `meshlet run` with a gateway edge pair or etcd client set OpenSSL refuses (an RSA-512 key) stops naming the files, with config check's line.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { rsa512Leaf } from '../tls/openssl-certs.ts';
import { cliToEnd as cli, devPki, type DevPki, tempDir, writeFiles } from './cli.ts';

const LISTENERS = { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } };

/** A gateway terminating TLS with `./edge.pem` and `./edge-key.pem`. */
const GATEWAY_TLS = stringify({
  listeners: {
    ...LISTENERS,
    gateway: { address: '127.0.0.1', port: 0, tls: { cert: './edge.pem', key: './edge-key.pem' } },
  },
  registry: { endpoints: { orders: ['127.0.0.1:9'] } },
  gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'orders' }] },
});

/** An etcd registry whose client certificate is `./reg.pem`, `./reg-key.pem`, CA `./reg-ca.pem`. */
const ETCD_TLS = stringify({
  listeners: LISTENERS,
  registry: {
    type: 'etcd',
    etcd: {
      hosts: ['https://127.0.0.1:9'],
      tls: { ca: './reg-ca.pem', cert: './reg.pem', key: './reg-key.pem' },
    },
  },
});

/** OpenSSL's reason for an RSA-512 key at its default security level. */
const KEY_TOO_SMALL = 'error:0A00018F:SSL routines::ee key too small';

let pki: DevPki;
/** An RSA-512 leaf for `web`, issued by `pki.ca`. */
let weak: { certPem: string; keyPem: string };

beforeAll(async () => {
  pki = await devPki();
  weak = rsa512Leaf(tempDir(), pki.ca, 'web');
});

/** A directory holding `meshlet.yaml` (`config`) and `files`. */
function configDir(config: string, files: Record<string, string>): { dir: string; file: string } {
  const dir = tempDir();
  writeFiles(dir, { 'meshlet.yaml': config, ...files });
  return { dir, file: join(dir, 'meshlet.yaml') };
}

describe('run stops on TLS files OpenSSL cannot use with the line config check prints', () => {
  it('listeners.gateway.tls: exit 1 naming the certificate and key', async () => {
    const { dir, file } = configDir(GATEWAY_TLS, { 'edge.pem': weak.certPem, 'edge-key.pem': weak.keyPem });
    const line =
      `listeners.gateway.tls.cert: ${dir}/edge.pem: TLS cannot use it with ` +
      `listeners.gateway.tls.key ${dir}/edge-key.pem: ${KEY_TOO_SMALL}`;
    const check = await cli(['config', 'check', file], dir);
    expect([check.code, check.stderr]).toEqual([2, `meshlet: invalid config: ${file}: ${line}\n`]);
    const run = await cli(['run', '--config', file], dir);
    expect([run.code, run.stderr]).toEqual([1, `meshlet: cannot start: ${line}\n`]);
  });

  it('registry.etcd.tls: exit 1 naming the three files', async () => {
    const { dir, file } = configDir(ETCD_TLS, {
      'reg.pem': weak.certPem,
      'reg-key.pem': weak.keyPem,
      'reg-ca.pem': pki.ca.certPem,
    });
    const line =
      `registry.etcd.tls.cert: ${dir}/reg.pem: TLS cannot use it with registry.etcd.tls.key ` +
      `${dir}/reg-key.pem and registry.etcd.tls.ca ${dir}/reg-ca.pem: ${KEY_TOO_SMALL}`;
    const check = await cli(['config', 'check', file], dir);
    expect([check.code, check.stderr]).toEqual([2, `meshlet: invalid config: ${file}: ${line}\n`]);
    const run = await cli(['run', '--config', file], dir);
    expect([run.code, run.stderr]).toEqual([1, `meshlet: cannot start: ${line}\n`]);
  });
});
