// registry.consul.tokenFile replaced on disk (Vault agent sink, Kubernetes projected token) is used without a restart or SIGHUP.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulTokenSource } from '../../src/registry/consul/token-file.ts';
import { createLogger, flushLogger } from '../../src/telemetry/logger.ts';
import { ConsulDouble, type TokenPolicy } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { consulRegistry, within } from './consul-helpers.ts';

const OLD = 'rotated-token-old-0001';
const NEW = 'rotated-token-new-0002';

describe('Consul ACL token file rotated on disk', () => {
  // The double reads its token table on every request: deleting a key revokes that token.
  const tokens: Record<string, TokenPolicy> = { [OLD]: 'write', [NEW]: 'write' };
  let double: ConsulDouble;
  let app: TestUpstream;
  let mesh: InProcessMeshlet | undefined;
  const dir = tempDir('meshlet-token-rotation-');
  const tokenFile = join(dir, 'consul-token');

  beforeAll(async () => {
    double = new ConsulDouble({ acl: { defaultPolicy: 'deny', tokens } });
    await double.start();
    app = await startUpstream();
    writeFileSync(tokenFile, `${OLD}\n`);
  });
  afterAll(async () => {
    await mesh?.close();
    await double?.stop();
    await app?.close();
  });

  it('the new token is used for every later call (watches too) without a restart, and never logged', async () => {
    const m = await startMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: consulRegistry(double, {
        consul: { tokenFile },
        serviceId: 'web-rotate',
        check: { interval: 200, timeout: 100 },
        watch: { wait: '300ms' },
      }),
      upstreams: { users: {} },
      shutdown: { drainDelay: 0 },
      accessLog: { enabled: false },
    });
    mesh = m;
    await double.waitFor((d) => d.checks('web-rotate')[0]?.status === 'passing', 3000, 'registered');

    // The way a Vault agent sink or a projected token rotates: a new file renamed over the old one,
    // then the old token revoked.
    writeFileSync(`${tokenFile}.tmp`, `${NEW}\n`);
    renameSync(`${tokenFile}.tmp`, tokenFile);
    delete tokens[OLD];
    const since = double.requests.length;
    const calls = () => double.requests.slice(since).filter((r) => r.path.startsWith('/v1/'));
    await within(
      4000,
      () => calls().some((r) => r.path.startsWith('/v1/agent/check/update/') && r.token === NEW),
      'a check update with the new token',
    );
    await within(
      4000,
      () => calls().some((r) => r.path.startsWith('/v1/health/service/users') && r.token === NEW),
      'a watch read with the new token',
    );
    expect(m.logs.some((l) => l.msg === 'consul token reloaded')).toBe(true);

    // From now on, every call carries the new token and the instance stays passing.
    const later = double.requests.length;
    await new Promise((r) => setTimeout(r, 600));
    const updates = double.requests.slice(later).filter((r) => r.path.startsWith('/v1/agent/check/update/'));
    expect(updates.length).toBeGreaterThan(0);
    expect(updates.every((r) => r.token === NEW)).toBe(true);
    expect(double.checks('web-rotate')[0]?.status).toBe('passing');
    const logs = JSON.stringify(m.logs);
    expect(logs).not.toContain(OLD);
    expect(logs).not.toContain(NEW);
  });
});

describe('ConsulTokenSource on a 403', () => {
  it('reads the file again at once (no waiting for the next look), takes a new token, keeps the running one when unreadable', () => {
    const dir = tempDir('meshlet-token-403-');
    const file = join(dir, 'token');
    const lines: string[] = [];
    const logger = createLogger(
      'info',
      new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }),
    );
    writeFileSync(file, `${OLD}\n`);
    const holder = {
      token: OLD as string | undefined,
      setToken: (t: string | undefined) => (holder.token = t),
    };
    // No polling in this test: only the 403 makes it look.
    const source = new ConsulTokenSource({ tokenFile: file }, holder, logger, 3_600_000);
    try {
      expect(source.refused()).toBe(false); // same token: nothing to do
      writeFileSync(file, `${NEW}\n`);
      expect(source.refused()).toBe(true);
      expect(holder.token).toBe(NEW);
      rmSync(file);
      expect(source.refused()).toBe(false);
      expect(holder.token).toBe(NEW);
      writeFileSync(file, '');
      expect(source.refused()).toBe(false); // an empty file (a writer half way) keeps the token
      expect(holder.token).toBe(NEW);
      flushLogger(logger);
      const said = lines.join('');
      expect(said).toContain('"msg":"consul token reloaded","trigger":"refused"');
      expect(said).toContain('consul token file unreadable; keeping the running token');
      expect(said).not.toContain(OLD);
      expect(said).not.toContain(NEW);
    } finally {
      source.stop();
    }
  });
});
