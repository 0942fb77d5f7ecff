// `secretFile` naming a missing, unreadable or empty file: `config check` and `run` both refuse the config (exit 2), naming the key path and the file.
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runCli, spawnMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';

/** A gateway whose `jwt` authenticators take their HMAC secret from the files named. */
function gatewayConfig(secrets: Record<string, string>) {
  return {
    listeners: {
      outbound: { port: 0 },
      admin: { port: 0 },
      adminGrpc: { enabled: false },
      gateway: { address: '127.0.0.1', port: 0 },
    },
    registry: { endpoints: { orders: ['127.0.0.1:9'] } },
    gateway: {
      auth: Object.fromEntries(
        Object.entries(secrets).map(([name, path]) => [name, { type: 'jwt', secretFile: path }]),
      ),
      routes: [{ match: { pathPrefix: '/orders/' }, upstream: 'orders', auth: Object.keys(secrets) }],
    },
  };
}

/** Both verbs on `file`: exit code and stderr lines. */
async function bothVerbs(file: string): Promise<{ verb: string; code: number | null; lines: string[] }[]> {
  const out = [];
  for (const args of [
    ['config', 'check', file],
    ['run', '--config', file],
  ]) {
    const { code, stderr } = await runCli(args);
    out.push({ verb: args[0]!, code, lines: stderr.trim().split('\n') });
  }
  return out;
}

const SECRET = 'a-secret-long-enough-for-hs256-000000';

describe('secretFile', () => {
  it('a missing file: config check and run both exit 2 with one line naming the key path and the file', async () => {
    const dir = tempDir('meshlet-secret-');
    const missing = join(dir, 'jwt.secret');
    const file = writeConfig(stringify(gatewayConfig({ users: missing })));
    for (const { verb, code, lines } of await bothVerbs(file)) {
      expect([verb, code, lines.length]).toEqual([verb, 2, 1]);
      expect(lines[0]).toBe(
        `meshlet: invalid config: ${file}: gateway.auth.users.secretFile: file ${missing}: no such file`,
      );
    }
  });

  it('an empty file (a lone newline too), a directory and an unreadable file are refused the same way; the secret never shows', async () => {
    const dir = tempDir('meshlet-secret-');
    const empty = join(dir, 'empty.secret');
    writeFileSync(empty, '\n');
    const folder = join(dir, 'folder');
    mkdirSync(folder);
    const good = join(dir, 'good.secret');
    writeFileSync(good, `${SECRET}\n`);
    const file = writeConfig(stringify(gatewayConfig({ users: empty, partners: folder, ok: good })));
    const { code, stderr } = await runCli(['config', 'check', file]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      `meshlet: invalid config: ${file}: gateway.auth.users.secretFile: file ${empty}: is empty; ` +
        `gateway.auth.partners.secretFile: file ${folder}: is a directory\n`,
    );
    expect(stderr).not.toContain(SECRET);
    if (process.getuid?.() !== 0) {
      // root reads any file: the permission case can only be seen as another user.
      const locked = join(dir, 'locked.secret');
      writeFileSync(locked, SECRET);
      chmodSync(locked, 0o000);
      const r = await runCli(['config', 'check', writeConfig(stringify(gatewayConfig({ users: locked })))]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`gateway.auth.users.secretFile: file ${locked}: permission denied`);
    }
  });

  it('a readable file: config check says ok and run starts', async () => {
    const dir = tempDir('meshlet-secret-');
    const good = join(dir, 'jwt.secret');
    writeFileSync(good, `${SECRET}\n`);
    const config = gatewayConfig({ users: good });
    const check = await runCli(['config', 'check', writeConfig(stringify(config))]);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(': ok (');
    const m = await spawnMeshlet(config as never);
    try {
      expect(m.stdout.some((l) => l.includes('"meshlet started"'))).toBe(true);
    } finally {
      m.proc.kill('SIGTERM');
      const code = await Promise.race([m.exited, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
      if (code === 'timeout') m.proc.kill('SIGKILL');
      expect(code).toBe(0);
    }
  });

  it('a reload to a config whose secretFile is gone is refused, naming the key path; the running config is kept', async () => {
    const dir = tempDir('meshlet-secret-');
    const good = join(dir, 'jwt.secret');
    writeFileSync(good, `${SECRET}\n`);
    const m = await spawnMeshlet(gatewayConfig({ users: good }) as never);
    try {
      rmSync(good);
      m.proc.kill('SIGHUP');
      const deadline = Date.now() + 10_000;
      const refused = () => m.stdout.find((l) => l.includes('config reload refused'));
      while (refused() === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const line = JSON.parse(refused() ?? '{}') as { level?: string; reason?: string };
      expect(line.reason).toBe(`${m.configFile}: gateway.auth.users.secretFile: file ${good}: no such file`);
      expect(m.proc.exitCode).toBeNull();
    } finally {
      m.proc.kill('SIGTERM');
      const code = await Promise.race([m.exited, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
      if (code === 'timeout') m.proc.kill('SIGKILL');
      expect(code).toBe(0);
    }
  });
});
