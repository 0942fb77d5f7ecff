// `meshlet run` re-executes itself as the daemon alone (semi-space capped, no CLI parser), or stays as it is when told.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_SEMI_SPACE_MB, MALLOC_TUNABLES } from '../../src/cli/gc-tuning.ts';
import { type MeshletProcess, runCli, spawnMeshlet, writeConfig } from '../helpers/meshlet.ts';

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

describe('meshlet run: the daemon process', () => {
  let mesh: MeshletProcess | undefined;
  afterEach(async () => {
    delete process.env.MESHLET_SEMI_SPACE_MB;
    if (mesh !== undefined && mesh.proc.exitCode === null) {
      mesh.proc.kill('SIGTERM');
      await mesh.exited;
    }
    mesh = undefined;
  });

  it('becomes daemon-main with --max-semi-space-size=2, same PID, serves, and drains on SIGTERM', async () => {
    mesh = await spawnMeshlet({ registry: { type: 'static', endpoints: {} } });
    const args = cmdline(mesh.proc.pid!);
    expect(args).toContain(`--max-semi-space-size=${DEFAULT_SEMI_SPACE_MB}`);
    expect(DEFAULT_SEMI_SPACE_MB).toBe(2);
    expect(args.some((a) => /daemon-main\.(ts|js)$/.test(a))).toBe(true);
    expect(args).toContain('--config');
    expect(args).toContain(mesh.configFile);
    expect(args.some((a) => /main\.ts$/.test(a) && !/daemon-main/.test(a))).toBe(false);
    // glibc splits the value in place (':' → NUL) as it parses it: look for each setting.
    const environ = readFileSync(`/proc/${mesh.proc.pid!}/environ`, 'utf8');
    for (const setting of MALLOC_TUNABLES.split(':')) expect(environ).toContain(setting);
    expect((await fetch(`${mesh.admin}/live`)).status).toBe(200);
    mesh.proc.kill('SIGTERM');
    expect(await mesh.exited).toBe(0);
  });

  it('honours MESHLET_SEMI_SPACE_MB (4) and GLIBC_TUNABLES and, at 0, runs in the CLI process with Node’s default', async () => {
    process.env.MESHLET_SEMI_SPACE_MB = '4';
    process.env.GLIBC_TUNABLES = 'glibc.malloc.arena_max=2';
    mesh = await spawnMeshlet({ registry: { type: 'static', endpoints: {} } });
    delete process.env.GLIBC_TUNABLES;
    expect(cmdline(mesh.proc.pid!)).toContain('--max-semi-space-size=4');
    // The operator's own malloc settings win.
    const environ = readFileSync(`/proc/${mesh.proc.pid!}/environ`, 'utf8');
    expect(environ).toContain('GLIBC_TUNABLES=glibc.malloc.arena_max=2');
    expect(environ).not.toContain('trim_threshold');
    mesh.proc.kill('SIGTERM');
    await mesh.exited;

    process.env.MESHLET_SEMI_SPACE_MB = '0';
    mesh = await spawnMeshlet({ registry: { type: 'static', endpoints: {} } });
    const args = cmdline(mesh.proc.pid!);
    expect(args.some((a) => a.startsWith('--max-semi-space-size'))).toBe(false);
    expect(args).toContain('run');
  });

  it('reports a bad config from the daemon entry as the CLI does: stderr names the key, exit 2', async () => {
    const file = writeConfig('listeners: { outbound: { port: "not a port" } }\n');
    const { code, stderr } = await runCli(['run', '--config', file]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/invalid config: .*listeners\.outbound\.port/);
  });
});
