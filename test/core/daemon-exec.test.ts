// `meshlet run` re-executes itself as the daemon alone (semi-space capped, no CLI parser), or stays as it is when told.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import { DEFAULT_SEMI_SPACE_MB, MAIN_THREAD_JIT_FLAG } from '../../src/cli/gc-tuning.ts';
import { JEMALLOC_CONF, JEMALLOC_PATHS, MALLOC_TUNABLES } from '../../src/cli/malloc-choice.ts';
import { HANDOVER_ENV } from '../../src/config/config-handover.ts';
import { type MeshletProcess, runCli, spawnMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream } from '../helpers/upstream-server.ts';

const RECORD_MODULES = fileURLToPath(new URL('../helpers/record-modules.ts', import.meta.url));
const DAEMON_ENTRY = fileURLToPath(new URL('../../src/cli/daemon-main.ts', import.meta.url));

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
/** The shared libraries mapped into a process: what it really runs with, not what its environment asks for. */
const mappedLibraries = (pid: number) =>
  readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .map((l) => l.split(/\s+/)[5] ?? '')
    .filter((p) => p.endsWith('.so') || /\.so\.\d/.test(p));
/** .ci/run installs libjemalloc2; these tests need it to show the default. */
const JEMALLOC = JEMALLOC_PATHS.find((p) => existsSync(p));

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
    // V8's compilers stay on their worker threads unless MESHLET_MAIN_THREAD_JIT=1.
    expect(args).not.toContain(MAIN_THREAD_JIT_FLAG);
    expect(args.some((a) => /daemon-main\.(ts|js)$/.test(a))).toBe(true);
    expect(args).toContain('--config');
    expect(args).toContain(mesh.configFile);
    expect(args.some((a) => /main\.ts$/.test(a) && !/daemon-main/.test(a))).toBe(false);
    // jemalloc, found on the host, is preloaded into the daemon with meshlet's settings.
    expect(JEMALLOC, 'libjemalloc.so.2 (Debian: libjemalloc2) is installed').toBeDefined();
    expect(mappedLibraries(mesh.proc.pid!)).toContain(JEMALLOC);
    const environ = readFileSync(`/proc/${mesh.proc.pid!}/environ`, 'utf8');
    expect(environ).toContain(`MALLOC_CONF=${JEMALLOC_CONF}`);
    expect(environ).not.toContain('GLIBC_TUNABLES');
    // …and says so in its start-up line.
    expect(mesh.stdout.join('\n')).toMatch(/"msg":"meshlet started".*"malloc":"libjemalloc\.so\.2"/);
    expect((await fetch(`${mesh.admin}/live`)).status).toBe(200);
    mesh.proc.kill('SIGTERM');
    expect(await mesh.exited).toBe(0);
  });

  it('honours MESHLET_SEMI_SPACE_MB (4), MALLOC_CONF and MESHLET_MAIN_THREAD_JIT and, at 0, runs in the CLI process with Node’s default', async () => {
    process.env.MESHLET_SEMI_SPACE_MB = '4';
    process.env.MALLOC_CONF = 'narenas:2';
    process.env.MESHLET_MAIN_THREAD_JIT = '1';
    try {
      mesh = await spawnMeshlet({ registry: { type: 'static', endpoints: {} } });
    } finally {
      delete process.env.MALLOC_CONF;
      delete process.env.MESHLET_MAIN_THREAD_JIT;
    }
    expect(cmdline(mesh.proc.pid!)).toContain('--max-semi-space-size=4');
    // MESHLET_MAIN_THREAD_JIT=1 moves V8's compilers to the main thread.
    expect(cmdline(mesh.proc.pid!)).toContain(MAIN_THREAD_JIT_FLAG);
    // The operator's own malloc settings win.
    const environ = readFileSync(`/proc/${mesh.proc.pid!}/environ`, 'utf8');
    expect(environ).toContain('MALLOC_CONF=narenas:2');
    expect(environ).not.toContain(JEMALLOC_CONF);
    mesh.proc.kill('SIGTERM');
    await mesh.exited;

    process.env.MESHLET_SEMI_SPACE_MB = '0';
    mesh = await spawnMeshlet({ registry: { type: 'static', endpoints: {} } });
    const args = cmdline(mesh.proc.pid!);
    expect(args.some((a) => a.startsWith('--max-semi-space-size'))).toBe(false);
    expect(args).toContain('run');
  });

  it('gets the validated config handed over: the daemon image loads neither zod nor yaml until a SIGHUP reload', async () => {
    const app = await startUpstream();
    const log = `${writeConfig('', 'modules.log')}`;
    process.env.MESHLET_TEST_MODULE_LOG = log;
    process.env.NODE_OPTIONS = `--import ${RECORD_MODULES}`;
    try {
      mesh = await spawnMeshlet({ registry: { type: 'static', endpoints: { users: [app.endpoint] } } });
    } finally {
      delete process.env.NODE_OPTIONS;
      delete process.env.MESHLET_TEST_MODULE_LOG;
    }
    try {
      const res = await request(`${mesh.outbound}/`, { headers: { host: 'users' } });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
      const loaded = readFileSync(log, 'utf8');
      expect(loaded).toMatch(/node_modules\/undici\//); // the recorder saw the daemon's imports
      expect(loaded).toMatch(/daemon\.(ts|js)\n/);
      expect(loaded).not.toMatch(/node_modules\/(zod|yaml)\//);

      // A reload imports the loader then, and applies the new file.
      writeFileSync(
        mesh.configFile,
        stringify({
          listeners: { outbound: { port: 0 }, admin: { port: 0 } },
          registry: { type: 'static', endpoints: { users: [app.endpoint], orders: [app.endpoint] } },
        }),
      );
      mesh.proc.kill('SIGHUP');
      let status = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const r = await request(`${mesh.outbound}/`, { headers: { host: 'orders' } });
        await r.body.dump();
        status = r.statusCode;
      }
      expect(status).toBe(200);
      expect(readFileSync(log, 'utf8')).toMatch(/node_modules\/zod\//);
    } finally {
      await app.close();
    }
  });

  it('MESHLET_MALLOC=glibc keeps the C library’s malloc, with meshlet’s tunables (or the operator’s GLIBC_TUNABLES)', async () => {
    process.env.MESHLET_MALLOC = 'glibc';
    try {
      mesh = await spawnMeshlet({ registry: { type: 'static', endpoints: {} } });
      expect(mappedLibraries(mesh.proc.pid!).some((p) => p.includes('jemalloc'))).toBe(false);
      // glibc splits the value in place (':' → NUL) as it parses it: look for each setting.
      const environ = readFileSync(`/proc/${mesh.proc.pid!}/environ`, 'utf8');
      for (const setting of MALLOC_TUNABLES.split(':')) expect(environ).toContain(setting);
      expect(environ).not.toContain('LD_PRELOAD');
      expect(mesh.stdout.join('\n')).toMatch(/"msg":"meshlet started".*"malloc":"libc"/);
      expect((await fetch(`${mesh.admin}/live`)).status).toBe(200);
      mesh.proc.kill('SIGTERM');
      await mesh.exited;

      process.env.GLIBC_TUNABLES = 'glibc.malloc.arena_max=2';
      mesh = await spawnMeshlet({ registry: { type: 'static', endpoints: {} } });
      const own = readFileSync(`/proc/${mesh.proc.pid!}/environ`, 'utf8');
      expect(own).toContain('GLIBC_TUNABLES=glibc.malloc.arena_max=2');
      expect(own).not.toContain('trim_threshold');
    } finally {
      delete process.env.MESHLET_MALLOC;
      delete process.env.GLIBC_TUNABLES;
    }
  });

  it('refuses an allocator it cannot load before the re-exec: exit 2 naming MESHLET_MALLOC', async () => {
    const file = writeConfig('registry: { type: static, endpoints: {} }\n');
    for (const [value, problem] of [
      ['/nowhere/libmalloc.so', /MESHLET_MALLOC: \/nowhere\/libmalloc\.so: no such file/],
      ['tcmalloc', /MESHLET_MALLOC: "tcmalloc" is not auto, jemalloc, glibc or an absolute path/],
    ] as const) {
      process.env.MESHLET_MALLOC = value;
      try {
        const { code, stderr } = await runCli(['run', '--config', file]);
        expect(code).toBe(2);
        expect(stderr).toMatch(problem);
      } finally {
        delete process.env.MESHLET_MALLOC;
      }
    }
  });

  it('reports a bad config before the re-exec as it always did: stderr names the key, exit 2', async () => {
    const file = writeConfig('listeners: { outbound: { port: "not a port" } }\n');
    const { code, stderr } = await runCli(['run', '--config', file]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/invalid config: .*listeners\.outbound\.port/);
  });

  it('validates the file itself when nothing was handed over (the daemon entry run directly): exit 2 naming the key', async () => {
    const file = writeConfig('listeners: { admin: { port: -1 } }\n');
    expect(process.env[HANDOVER_ENV]).toBeUndefined();
    const { code, stderr } = await runCli(['--config', file, '--log-level', 'info'], 15_000, DAEMON_ENTRY);
    expect(code).toBe(2);
    expect(stderr).toMatch(/invalid config: .*listeners\.admin\.port/);
  });
});
