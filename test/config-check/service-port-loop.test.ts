// `config check` refuses a `service.port` (the local app's port) that is one of meshlet's own listener ports: a forwarding loop.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cli, devPki, tempDir, writeFiles } from './cli.ts';

const TLS = { source: 'files', cert: './certs/web.pem', key: './certs/web-key.pem', ca: './certs/ca.pem' };

interface Case {
  readonly name: string;
  readonly config: object;
  /** The listener key `config check` names as the port's owner. */
  readonly owner: string;
}

const CASES: Case[] = [
  {
    name: 'the inbound listener (mTLS, default 15443)',
    config: { service: { name: 'web', port: 15443 }, tls: TLS, listeners: { adminGrpc: { enabled: false } } },
    owner: 'listeners.inbound.port',
  },
  {
    name: 'the inbound listener (named port)',
    config: {
      service: { name: 'web', port: 18443 },
      tls: TLS,
      listeners: { inbound: { port: 18443 }, adminGrpc: { enabled: false } },
    },
    owner: 'listeners.inbound.port',
  },
  {
    name: 'the outbound listener (default 15001)',
    config: { service: { name: 'web', port: 15001 }, listeners: { adminGrpc: { enabled: false } } },
    owner: 'listeners.outbound.port',
  },
  {
    name: 'the admin listener',
    config: { service: { name: 'web', port: 15000 }, listeners: { adminGrpc: { enabled: false } } },
    owner: 'listeners.admin.port',
  },
  {
    name: 'a per-upstream listener',
    config: {
      service: { name: 'web', port: 9191 },
      listeners: { adminGrpc: { enabled: false } },
      upstreams: { users: { port: 9191 } },
    },
    owner: 'upstreams.users.port',
  },
];

describe('service.port equal to a meshlet listener port', () => {
  for (const c of CASES) {
    it(
      `${c.name}: config check exits 2 naming service.port; another port passes`,
      { timeout: 30_000 },
      async () => {
        const pki = await devPki();
        const certs = {
          'certs/web.pem': pki.leaf.certPem,
          'certs/web-key.pem': pki.leaf.keyPem,
          'certs/ca.pem': pki.ca.certPem,
        };
        const dir = tempDir();
        writeFiles(dir, { 'meshlet.yaml': stringify(c.config), ...certs });
        const file = join(dir, 'meshlet.yaml');
        const check = await cli(['config', 'check', file], dir);
        expect(check.code, check.stderr).toBe(2);
        const port = (c.config as { service: { port: number } }).service.port;
        expect(check.stderr).toBe(
          `meshlet: invalid config: ${file}: service.port: port ${port} is meshlet's own ${c.owner}, not the local app's: the inbound listener would forward to meshlet itself (a forwarding loop)\n`,
        );

        // The same config with the app on its own port is valid.
        const good = { ...c.config, service: { name: 'web', port: 8080 } };
        const okDir = tempDir();
        writeFiles(okDir, { 'meshlet.yaml': stringify(good), ...certs });
        const ok = await cli(['config', 'check', join(okDir, 'meshlet.yaml')], okDir);
        expect([ok.code, ok.stderr]).toEqual([0, '']);
      },
    );
  }
});
