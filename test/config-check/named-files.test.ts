// `config check` refuses the other files a config names that `run` refuses at start (endpoints, API keys, gateway TLS, registry credentials); --offline skips them.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cliToEnd as cli, devPki, type DevPki, tempDir, writeFiles } from './cli.ts';

const LISTENERS = { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } };
const GATEWAY_LISTENER = { ...LISTENERS, gateway: { address: '127.0.0.1', port: 0 } };
const KEY_HASH = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08';

/** A gateway whose route takes API keys from `./keys.yaml`. */
const apiKeys = {
  listeners: GATEWAY_LISTENER,
  registry: { endpoints: { orders: ['127.0.0.1:9'] } },
  gateway: {
    auth: { keys: { type: 'apiKey', file: './keys.yaml' } },
    routes: [{ match: { pathPrefix: '/' }, upstream: 'orders', auth: ['keys'] }],
  },
};
/** A gateway terminating TLS with `./edge.pem` and `./edge-key.pem`. */
const gatewayTls = {
  listeners: {
    ...LISTENERS,
    gateway: { address: '127.0.0.1', port: 0, tls: { cert: './edge.pem', key: './edge-key.pem' } },
  },
  registry: { endpoints: { orders: ['127.0.0.1:9'] } },
  gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'orders' }] },
};
const clientTls = { ca: './reg-ca.pem', cert: './reg.pem', key: './reg-key.pem' };

interface Case {
  readonly name: string;
  readonly config: object;
  /** Files that make the config good. */
  readonly good: (pki: Awaited<ReturnType<typeof devPki>>) => Record<string, string>;
  /** Files that make it bad, and the line `config check` prints (`D` stands for the directory). */
  readonly bad: [Record<string, string>, string][];
}

const CASES: Case[] = [
  {
    name: 'registry.file',
    config: { listeners: LISTENERS, registry: { file: './endpoints.yaml' } },
    good: () => ({ 'endpoints.yaml': 'orders: ["127.0.0.1:9"]\n' }),
    bad: [
      [{}, 'registry.file: D/endpoints.yaml: cannot read endpoints file: no such file'],
      [{ 'endpoints.yaml': 'orders: [1\n' }, 'registry.file: D/endpoints.yaml: not valid YAML at line 2'],
      [{ 'endpoints.yaml': 'orders: ["nope"]\n' }, 'registry.file: D/endpoints.yaml: orders[0]'],
    ],
  },
  {
    name: 'gateway.auth.NAME.file (apiKey)',
    config: apiKeys,
    good: () => ({ 'keys.yaml': `keys:\n  - { name: ci, sha256: ${KEY_HASH} }\n` }),
    bad: [
      [{}, 'gateway.auth.keys.file: D/keys.yaml: no such file'],
      [
        { 'keys.yaml': 'keys:\n  - { name: ci, sha256: zz }\n' },
        `gateway.auth.keys.file: D/keys.yaml: keys[0]: "sha256" must be 64 hex digits`,
      ],
    ],
  },
  {
    name: 'listeners.gateway.tls',
    config: gatewayTls,
    good: (pki) => ({ 'edge.pem': pki.leaf.certPem, 'edge-key.pem': pki.leaf.keyPem }),
    bad: [
      [
        {},
        'listeners.gateway.tls.cert: D/edge.pem: no such file; listeners.gateway.tls.key: D/edge-key.pem: no such file',
      ],
      [
        { 'edge.pem': 'x', 'edge-key.pem': 'y' },
        'listeners.gateway.tls.cert: D/edge.pem: not a PEM certificate',
      ],
    ],
  },
  {
    name: 'registry.consul.tokenFile and tls',
    config: {
      listeners: LISTENERS,
      registry: {
        type: 'consul',
        consul: { address: 'https://127.0.0.1:9', tokenFile: './token', tls: clientTls },
      },
    },
    good: (pki) => ({
      token: 't\n',
      'reg-ca.pem': pki.ca.certPem,
      'reg.pem': pki.leaf.certPem,
      'reg-key.pem': pki.leaf.keyPem,
    }),
    bad: [
      [
        { 'reg-ca.pem': 'x', 'reg.pem': 'x' },
        'registry.consul.tokenFile: D/token: no such file; registry.consul.tls.key: D/reg-key.pem: no such file',
      ],
    ],
  },
  {
    name: 'registry.etcd.auth.passwordFile and tls',
    config: {
      listeners: LISTENERS,
      registry: {
        type: 'etcd',
        etcd: {
          hosts: ['https://127.0.0.1:9'],
          auth: { username: 'u', passwordFile: './pw' },
          tls: clientTls,
        },
      },
    },
    good: (pki) => ({
      pw: 'p\n',
      'reg-ca.pem': pki.ca.certPem,
      'reg.pem': pki.leaf.certPem,
      'reg-key.pem': pki.leaf.keyPem,
    }),
    bad: [
      [{ pw: 'p', 'reg.pem': 'x', 'reg-key.pem': 'x' }, 'registry.etcd.tls.ca: D/reg-ca.pem: no such file'],
    ],
  },
  {
    name: 'registry.redis.passwordFile and tls',
    config: {
      listeners: LISTENERS,
      registry: {
        type: 'redis',
        redis: { url: 'rediss://127.0.0.1:9', passwordFile: './pw', tls: clientTls },
      },
    },
    good: (pki) => ({
      pw: 'p\n',
      'reg-ca.pem': pki.ca.certPem,
      'reg.pem': pki.leaf.certPem,
      'reg-key.pem': pki.leaf.keyPem,
    }),
    bad: [
      [
        { 'reg-ca.pem': 'x', 'reg.pem': 'x', 'reg-key.pem': 'x' },
        'registry.redis.passwordFile: D/pw: no such file',
      ],
    ],
  },
];

describe('config check reads the files a config names', () => {
  // One CA and leaf for every case: the cases only read them.
  let pki: DevPki;
  beforeAll(async () => {
    pki = await devPki();
  });

  for (const c of CASES) {
    it(`${c.name}: refused as run refuses it, ok when good, skipped with --offline`, async () => {
      // Each bad set of files in its own directory, and the good one: every CLI run at once.
      const bad = c.bad.map(async ([files, expected]) => {
        const dir = tempDir();
        writeFiles(dir, { 'meshlet.yaml': stringify(c.config), ...files });
        const file = join(dir, 'meshlet.yaml');
        const [check, offline, run] = await Promise.all([
          cli(['config', 'check', file], dir),
          cli(['config', 'check', '--offline', file], dir),
          cli(['run', '--config', file], dir),
        ]);
        expect(check.code, check.stderr).toBe(2);
        expect(check.stderr).toContain(
          `meshlet: invalid config: ${file}: ${expected.replaceAll('D/', `${dir}/`)}`,
        );
        expect(check.stderr.split('\n')).toHaveLength(2);
        expect([offline.code, offline.stderr]).toEqual([0, '']);
        // run refuses it at start too (exit 1: "cannot start"), so a passing check would have lied.
        expect([run.code, run.stderr.startsWith('meshlet: cannot start: ')]).toEqual([1, true]);
      });
      const good = (async () => {
        const dir = tempDir();
        writeFiles(dir, { 'meshlet.yaml': stringify(c.config), ...c.good(pki) });
        const ok = await cli(['config', 'check', join(dir, 'meshlet.yaml')], dir);
        expect([ok.code, ok.stderr]).toEqual([0, '']);
      })();
      await Promise.all([...bad, good]);
    }, 90_000);
  }
});
