// SIGHUPs at awkward moments: two in quick succession, and one while the daemon image is still loading its modules.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, type MeshletProcess, spawnMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { untilDaemonImage } from './daemon-image.ts';
import { until } from './wrapper-helpers.ts';

const SLOW_LOAD = fileURLToPath(new URL('./slow-load.ts', import.meta.url));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The config of a daemon whose upstream `users` tries `attempts` times, on fixed listener ports. */
function configWith(attempts: number, listeners: object): string {
  return stringify({
    listeners: { adminGrpc: { enabled: false }, ...listeners },
    registry: { type: 'static', endpoints: {} },
    upstreams: { users: { retries: { attempts } } },
  });
}

/** `upstreams.users.retries.attempts` of the running config, from `GET /config`. */
async function runningAttempts(admin: string): Promise<number> {
  const doc = (await (await request(`${admin}/config`)).body.json()) as {
    config: { upstreams: { users: { retries: { attempts: number } } } };
  };
  return doc.config.upstreams.users.retries.attempts;
}

/** Whether process `pid` has a handler for SIGHUP (bit 0 of SigCgt in /proc/PID/status). */
function sighupCaught(pid: number): boolean {
  try {
    const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return mask !== undefined && (BigInt(`0x${mask}`) & 1n) === 1n;
  } catch {
    return false;
  }
}

describe('SIGHUP races', () => {
  let mesh: MeshletProcess | undefined;
  afterEach(() => {
    if (mesh !== undefined && mesh.proc.exitCode === null && mesh.proc.signalCode === null)
      mesh.proc.kill('SIGKILL');
    mesh = undefined;
  });

  it('two SIGHUPs 10 ms apart, five times: the last file written wins, no crash, no second listener', async () => {
    mesh = await spawnMeshlet({
      listeners: { adminGrpc: { enabled: false } },
      upstreams: { users: { retries: { attempts: 1 } } },
    } as never);
    const m = mesh;
    const listeners = {
      outbound: { port: Number(new URL(m.outbound).port) },
      admin: { port: Number(new URL(m.admin).port) },
    };
    const reloads = (): number => m.stdout.filter((l) => l.includes('"config reloaded"')).length;
    for (let round = 0; round < 5; round++) {
      const before = reloads();
      writeFileSync(m.configFile, configWith(2 + round, listeners));
      m.proc.kill('SIGHUP');
      await sleep(10);
      writeFileSync(m.configFile, configWith(6 + round, listeners));
      m.proc.kill('SIGHUP');
      await until(() => reloads() >= before + 2, 5000, `round ${round}: both reloads`);
      expect(await runningAttempts(m.admin)).toBe(6 + round);
    }
    expect(m.proc.exitCode).toBeNull();
    const text = m.stdout.join('\n');
    expect(text).not.toContain('EADDRINUSE');
    expect(text).not.toContain('refused');
    expect(text).not.toContain('"level":"error"');
    m.proc.kill('SIGTERM');
    expect(await m.exited).toBe(0);
  });

  it('a SIGHUP while the re-executed daemon image loads its modules is held and applied once it runs', async () => {
    const file = writeConfig(configWith(1, { outbound: { port: 0 }, admin: { port: 0 } }));
    const proc = spawn(process.execPath, [CLI, 'run', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Loading src/daemon.ts takes 2 s longer in the re-executed image: the window stays open.
      env: {
        ...process.env,
        NODE_OPTIONS: `--import ${SLOW_LOAD}`,
        MESHLET_TEST_SLOW_LOAD_MS: '2000',
      },
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      proc.on('exit', (code, signal) => r({ code, signal })),
    );
    try {
      // The same PID becomes daemon-main (execve); Node's own start-up takes well under 500 ms.
      await untilDaemonImage(proc.pid!);
      // Node's own bootstrap (before any JavaScript) cannot hold a SIGHUP: wait until the new image
      // catches it (SigCgt bit 0), which the hold does before the daemon's modules load.
      await until(() => sighupCaught(proc.pid!), 10_000, 'the daemon image holds SIGHUP');
      expect(out).not.toContain('meshlet started');
      writeFileSync(file, configWith(4, { outbound: { port: 0 }, admin: { port: 0 } }));
      proc.kill('SIGHUP');
      await until(
        () => out.includes('"config reloaded"') || proc.exitCode !== null || proc.signalCode !== null,
        15_000,
        'the held reload',
      );
      expect({ code: proc.exitCode, signal: proc.signalCode }).toEqual({ code: null, signal: null });
      const admin = /"admin":\{"address":"127\.0\.0\.1","port":(\d+)\}/.exec(out)![1];
      expect(await runningAttempts(`http://127.0.0.1:${admin}`)).toBe(4);
      proc.kill('SIGTERM');
      expect(await exited).toEqual({ code: 0, signal: null });
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
  });
  it('a SIGHUP while the CLI loads its verbs, before the re-exec, is carried into the daemon and applied once it runs', async () => {
    const file = writeConfig(configWith(1, { outbound: { port: 0 }, admin: { port: 0 } }));
    const proc = spawn(process.execPath, [CLI, 'run', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Loading src/cli/verbs.ts (yargs, the config loader) takes 2 s longer: the window stays open.
      env: {
        ...process.env,
        NODE_OPTIONS: `--import ${SLOW_LOAD}`,
        MESHLET_TEST_SLOW_LOAD_MS: '2000',
        MESHLET_TEST_SLOW_STAGE: 'cli',
      },
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      proc.on('exit', (code, signal) => r({ code, signal })),
    );
    try {
      // Node's own start-up (before any JavaScript, and slower on a loaded machine) cannot hold a
      // SIGHUP: wait until the CLI catches it (SigCgt bit 0), which main() does before the verbs
      // load; they then load for 2 s, the window under test.
      await until(() => sighupCaught(proc.pid!), 10_000, 'the CLI holds SIGHUP');
      expect(readFileSync(`/proc/${proc.pid}/cmdline`, 'utf8')).not.toContain('daemon-main');
      proc.kill('SIGHUP');
      writeFileSync(file, configWith(4, { outbound: { port: 0 }, admin: { port: 0 } }));
      await until(
        () => out.includes('"config reloaded"') || proc.exitCode !== null || proc.signalCode !== null,
        15_000,
        'the held reload',
      );
      expect({ code: proc.exitCode, signal: proc.signalCode }).toEqual({ code: null, signal: null });
      const admin = /"admin":\{"address":"127\.0\.0\.1","port":(\d+)\}/.exec(out)![1];
      expect(await runningAttempts(`http://127.0.0.1:${admin}`)).toBe(4);
      proc.kill('SIGTERM');
      expect(await exited).toEqual({ code: 0, signal: null });
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
  });
});
