// Every file path in a config is relative to the config file's directory, for `run`, `config check` and a reload alike, wherever meshlet is started.
import { request } from 'node:https';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { configPaths } from '../../src/config/config-paths.ts';
import { loadConfigFile } from '../../src/config/load-config.ts';
import { etcdOptions } from '../../src/registry/etcd/etcd-connection.ts';
import { createRedisClient } from '../../src/registry/redis/redis-connection.ts';
import { hashApiKey } from '../../src/gateway/api-key-authenticator.ts';
import { cli, devPki, runIn, tempDir, writeFiles } from './cli.ts';

const LISTENERS = { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } };
const SECRET = 'a-secret-long-enough-for-hs256-000000';
const API_KEY = 'key-of-the-ci-bot';

describe('relative file paths', () => {
  it('every path key is resolved against the config file directory, not the working directory', () => {
    const dir = tempDir();
    const tls = { ca: 'pki/ca.pem', cert: 'pki/c.pem', key: 'pki/k.pem' };
    const gateway = {
      auth: {
        users: { type: 'jwt', secretFile: 'secrets/jwt' },
        keys: { type: 'apiKey', file: './keys.yaml' },
      },
      routes: [{ match: { pathPrefix: '/' }, upstream: 'orders', auth: ['users', 'keys'] }],
    };
    const base = {
      service: { name: 'web', port: 8080 },
      listeners: {
        ...LISTENERS,
        gateway: { port: 0, tls: { cert: 'edge/cert.pem', key: 'edge/key.pem' } },
      },
      tls: { source: 'files', cert: 'certs/web.pem', key: 'certs/web-key.pem', ca: 'certs/ca.pem' },
      gateway,
    };
    const registries = [
      { file: 'endpoints.yaml', endpoints: { orders: ['127.0.0.1:9'] } },
      { type: 'consul', consul: { tokenFile: 'token', tls } },
      { type: 'etcd', etcd: { auth: { username: 'u', passwordFile: 'etcd-pw' }, tls } },
      { type: 'redis', redis: { passwordFile: 'redis-pw', tls } },
    ];
    const seen = new Set<string>();
    for (const registry of registries) {
      writeFiles(dir, { 'meshlet.yaml': stringify({ ...base, registry }) });
      const config = loadConfigFile(join(dir, 'meshlet.yaml'), { secrets: false });
      const raw = JSON.parse(JSON.stringify({ ...base, registry })) as Record<string, unknown>;
      for (const { keyPath, path } of configPaths(config)) {
        const written = keyPath.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], raw);
        expect(path, keyPath).toBe(join(dir, written as string));
        seen.add(keyPath.replace(/^gateway\.auth\.\w+\./, 'gateway.auth.NAME.'));
      }
    }
    expect([...seen].sort()).toEqual(
      [
        'listeners.gateway.tls.cert',
        'listeners.gateway.tls.key',
        'registry.file',
        'registry.consul.tokenFile',
        'registry.etcd.auth.passwordFile',
        'registry.redis.passwordFile',
        'tls.cert',
        'tls.key',
        'tls.ca',
        'gateway.auth.NAME.secretFile',
        'gateway.auth.NAME.file',
        ...['consul', 'etcd', 'redis'].flatMap((r) =>
          ['ca', 'cert', 'key'].map((k) => `registry.${r}.tls.${k}`),
        ),
      ].sort(),
    );
  });

  it('etcd and redis read their password (and TLS) files from the config directory', async () => {
    const dir = tempDir();
    const pki = await devPki();
    writeFiles(dir, {
      'etcd-pw': 'etcd-password\n',
      'redis-pw': 'redis-password\n',
      'pki/ca.pem': pki.ca.certPem,
    });
    const tls = { ca: './pki/ca.pem' };
    const write = (registry: object) => {
      writeFiles(dir, { 'meshlet.yaml': stringify({ listeners: LISTENERS, registry }) });
      return loadConfigFile(join(dir, 'meshlet.yaml')).registry;
    };
    const etcd = write({
      type: 'etcd',
      etcd: { hosts: ['https://127.0.0.1:9'], auth: { username: 'u', passwordFile: './etcd-pw' }, tls },
    });
    if (etcd.type !== 'etcd') throw new Error('expected etcd');
    const options = etcdOptions(etcd.etcd);
    expect(options.auth?.password).toBe('etcd-password');
    expect(String(options.credentials?.rootCertificate)).toBe(pki.ca.certPem);
    const redis = write({
      type: 'redis',
      redis: { url: 'rediss://127.0.0.1:9', passwordFile: './redis-pw', tls },
    });
    if (redis.type !== 'redis') throw new Error('expected redis');
    const client = createRedisClient({ ...redis.redis, options: { lazyConnect: true } });
    try {
      const o = client.options as { password?: string; tls?: { ca?: Buffer } };
      expect([o.password, String(o.tls?.ca)]).toEqual(['redis-password', pki.ca.certPem]);
    } finally {
      client.disconnect();
    }
  });

  it('run, config check and a reload started elsewhere find secretFile, the API key file and the gateway certificate next to the config', async () => {
    const dir = tempDir();
    const elsewhere = tempDir();
    const pki = await devPki();
    writeFiles(dir, {
      'secrets/jwt': `${SECRET}\n`,
      'keys.yaml': `keys:\n  - { name: ci, sha256: ${hashApiKey(API_KEY)} }\n`,
      'edge/cert.pem': pki.leaf.certPem,
      'edge/key.pem': pki.leaf.keyPem,
      'meshlet.yaml': stringify({
        listeners: {
          ...LISTENERS,
          gateway: { address: '127.0.0.1', port: 0, tls: { cert: 'edge/cert.pem', key: 'edge/key.pem' } },
        },
        registry: { endpoints: { orders: ['127.0.0.1:9'] } },
        gateway: {
          auth: {
            users: { type: 'jwt', secretFile: './secrets/jwt' },
            keys: { type: 'apiKey', file: './keys.yaml' },
          },
          routes: [{ match: { pathPrefix: '/' }, upstream: 'orders', auth: ['users', 'keys'] }],
        },
      }),
    });
    const file = join(dir, 'meshlet.yaml');
    const check = await cli(['config', 'check', file], elsewhere);
    expect([check.code, check.stderr]).toEqual([0, '']);
    const m = await runIn(file, elsewhere);
    try {
      const started = JSON.parse(m.stdout.find((l) => l.includes('"meshlet started"'))!) as {
        gateway: { port: number };
      };
      // The key file was loaded (the key is accepted: the request goes on to the unreachable upstream, not 401).
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: started.gateway.port,
            path: '/x',
            ca: pki.ca.certPem,
            servername: 'localhost',
            headers: { 'x-api-key': API_KEY },
            timeout: 10_000,
          },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
        req.on('error', reject);
        req.end();
      });
      expect(status).not.toBe(401);
      expect(status).toBeGreaterThanOrEqual(500);
      m.proc.kill('SIGHUP');
      const deadline = Date.now() + 10_000;
      const outcome = () => m.stdout.find((l) => /"config reload(ed| refused)/.test(l));
      while (outcome() === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(outcome()).toContain('"config reloaded"');
    } finally {
      expect(await m.stop()).toBe(0);
    }
  }, 60_000);
});
