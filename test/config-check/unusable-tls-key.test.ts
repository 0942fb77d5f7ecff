// A TLS file set that fits together but OpenSSL refuses (an RSA-512 key): `config check` refuses it (exit 2) and `meshlet run` stops (exit 1), with one line naming the files.
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cliToEnd as cli, type DevPki } from './cli.ts';
import { configDir, KEY_TOO_SMALL, LISTENERS, weakLeaf } from './unusable-tls.ts';

/** An inbound mTLS listener whose files are `./certs/web.pem`, `./certs/web-key.pem`, `./certs/ca.pem`. */
const MESH_TLS = stringify({
  service: { name: 'web', port: 8080 },
  listeners: { ...LISTENERS, inbound: { address: '127.0.0.1', port: 0 } },
  tls: { source: 'files', cert: './certs/web.pem', key: './certs/web-key.pem', ca: './certs/ca.pem' },
});

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

let pki: DevPki;
/** An RSA-512 leaf for `web`, issued by `pki.ca`. */
let weak: { certPem: string; keyPem: string };

beforeAll(async () => {
  ({ pki, weak } = await weakLeaf());
});

describe('config check refuses TLS files OpenSSL cannot use, as run does', () => {
  it('tls (source files): exit 2 naming the three files; run stops with the same line', async () => {
    const { dir, file } = configDir(MESH_TLS, {
      'certs/web.pem': weak.certPem,
      'certs/web-key.pem': weak.keyPem,
      'certs/ca.pem': pki.ca.certPem,
    });
    const line =
      `tls.cert: ${dir}/certs/web.pem: TLS cannot use it with tls.key ${dir}/certs/web-key.pem ` +
      `and tls.ca ${dir}/certs/ca.pem: ${KEY_TOO_SMALL}`;
    const check = await cli(['config', 'check', file], dir);
    expect([check.code, check.stderr]).toEqual([2, `meshlet: invalid config: ${file}: ${line}\n`]);
    const run = await cli(['run', '--config', file], dir);
    expect([run.code, run.stderr]).toEqual([1, `meshlet: cannot start: ${line}\n`]);
  });

  it('listeners.gateway.tls: exit 2 naming the certificate and key; run stops with the same line', async () => {
    const { dir, file } = configDir(GATEWAY_TLS, { 'edge.pem': weak.certPem, 'edge-key.pem': weak.keyPem });
    const line =
      `listeners.gateway.tls.cert: ${dir}/edge.pem: TLS cannot use it with ` +
      `listeners.gateway.tls.key ${dir}/edge-key.pem: ${KEY_TOO_SMALL}`;
    const check = await cli(['config', 'check', file], dir);
    expect([check.code, check.stderr]).toEqual([2, `meshlet: invalid config: ${file}: ${line}\n`]);
    const run = await cli(['run', '--config', file], dir);
    expect([run.code, run.stderr]).toEqual([1, `meshlet: cannot start: ${line}\n`]);
  });

  it('registry.etcd.tls: exit 2 naming the three files; run stops with the same line', async () => {
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

  it('a usable gateway set still passes config check (only what TLS refuses is refused)', async () => {
    const { dir, file } = configDir(GATEWAY_TLS, {
      'edge.pem': pki.leaf.certPem,
      'edge-key.pem': pki.leaf.keyPem,
    });
    const check = await cli(['config', 'check', file], dir);
    expect([check.code, check.stderr]).toEqual([0, '']);
  });
});
