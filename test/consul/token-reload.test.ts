// SIGHUP takes a rotated Consul ACL token from registry.consul.tokenFile; an unreadable file keeps the running one.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { consulRegistry, within } from './consul-helpers.ts';

const OLD = 'token-old-0123456789';
const NEW = 'token-new-9876543210';

describe('Consul ACL token reload', () => {
  let double: ConsulDouble;
  let app: TestUpstream;
  let mesh: MeshletProcess;
  const tokenFile = join(tempDir('meshlet-token-reload-'), 'consul-token');

  beforeAll(async () => {
    double = new ConsulDouble({ acl: { defaultPolicy: 'deny', tokens: { [OLD]: 'write', [NEW]: 'write' } } });
    await double.start();
    app = await startUpstream();
    writeFileSync(tokenFile, `${OLD}\n`);
  });
  afterAll(async () => {
    mesh?.proc.kill('SIGKILL');
    await double?.stop();
    await app?.close();
  });

  const checkUpdates = (from: number) =>
    double.requests.slice(from).filter((r) => r.path.startsWith('/v1/agent/check/update/'));

  it('sends the new token on every later call, never logs it, and keeps it when the file goes away', async () => {
    mesh = await spawnMeshlet({
      service: { name: 'web', port: app.port, address: '127.0.0.1' },
      registry: consulRegistry(double, {
        consul: { tokenFile },
        serviceId: 'web-token',
        check: { interval: '200ms', timeout: '100ms' },
      }),
    });
    await within(
      5000,
      () => checkUpdates(0).some((r) => r.token === OLD),
      'check updates with the old token',
    );

    writeFileSync(tokenFile, `${NEW}\n`);
    mesh.proc.kill('SIGHUP');
    await within(5000, () => mesh.stdout.some((l) => l.includes('consul token reloaded')), 'reload logged');
    await within(
      5000,
      () => checkUpdates(0).some((r) => r.token === NEW),
      'check updates with the new token',
    );
    const since = double.requests.length;
    await new Promise((r) => setTimeout(r, 600));
    const later = checkUpdates(since);
    expect(later.length).toBeGreaterThan(0);
    expect(later.every((r) => r.token === NEW)).toBe(true);

    rmSync(tokenFile);
    mesh.proc.kill('SIGHUP');
    await within(5000, () => mesh.stdout.some((l) => l.includes('consul token file unreadable')), 'kept');
    const after = double.requests.length;
    await new Promise((r) => setTimeout(r, 600));
    expect(checkUpdates(after).every((r) => r.token === NEW)).toBe(true);
    expect(checkUpdates(after).length).toBeGreaterThan(0);

    const logs = mesh.stdout.join('\n');
    expect(logs).not.toContain(OLD);
    expect(logs).not.toContain(NEW);
  });
});
