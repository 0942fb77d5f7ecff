// Starts meshlet for tests: in-process (Daemon) or as a real `meshlet run` process.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { tempDir } from './temp-dir.ts';
import { onLines } from './lines.ts';

export const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/** Listens on port 0 everywhere unless the test says otherwise. */
function withFreePorts(input: ConfigInput): ConfigInput {
  return {
    ...input,
    listeners: { outbound: { port: 0 }, admin: { port: 0 }, ...input.listeners },
  };
}

export interface InProcessMeshlet {
  daemon: Daemon;
  /** `http://127.0.0.1:PORT` of the outbound listener. */
  outbound: string;
  admin: string;
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/** Starts a Daemon in this process with logs captured as parsed JSON lines. */
export async function startMeshlet(input: ConfigInput): Promise<InProcessMeshlet> {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line));
      cb();
    },
  });
  const logger = createLogger('info', sink);
  const daemon = await Daemon.start(validateConfig(withFreePorts(input)), { logger, processMetrics: false });
  const a = daemon.addresses();
  return {
    daemon,
    outbound: `http://127.0.0.1:${a.outbound.port}`,
    admin: `http://127.0.0.1:${a.admin.port}`,
    logs,
    close: () => daemon.shutdown('test'),
  };
}

/** Writes a config object (or YAML text) to a fresh temp dir (removed after the file's tests); returns the file path. */
export function writeConfig(config: ConfigInput | string, name = 'meshlet.yaml'): string {
  const dir = tempDir('meshlet-test-');
  const file = join(dir, name);
  writeFileSync(file, typeof config === 'string' ? config : stringify(config));
  return file;
}

export interface MeshletProcess {
  proc: ChildProcess;
  /** The config file the process runs on (rewrite it and send SIGHUP to reload). */
  configFile: string;
  outbound: string;
  admin: string;
  stdout: string[];
  stderr: string[];
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/**
 * Runs `meshlet ARGS` (the real CLI, or another entry `script`) in `cwd` (default: this process's)
 * and collects its output; resolves with its exit code and output.
 * @param settle - `'exit'` (default): resolves on the process's exit, when its last output may still be
 *   unread (Node emits `exit` before the pipes close; seen under load: exit 2 with an empty stderr);
 *   `'close'`: once it exited and its stdout and stderr closed, so the output is whole.
 */
export function runCli(
  args: string[],
  timeoutMs = 15_000,
  script = CLI,
  cwd?: string,
  settle: 'exit' | 'close' = 'exit',
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [script, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => {
      stdout += d;
    });
    proc.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`meshlet ${args.join(' ')} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    proc.on(settle, (code: number | null) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * How many {@link runCliToEnd} processes run at once in a test file: one per core, at least 2. Each
 * `meshlet` process spends most of its life on the CPU loading modules, so more at once only slows each
 * down (toward its timeout) without finishing sooner; the others wait for a slot, their timeout not yet running.
 */
const CLI_SLOTS = Math.max(2, availableParallelism());
let cliRunning = 0;
const cliQueue: (() => void)[] = [];

/** Resolves once a CLI slot is this caller's. */
async function takeCliSlot(): Promise<void> {
  if (cliRunning < CLI_SLOTS) {
    cliRunning++;
    return;
  }
  await new Promise<void>((resolve) => cliQueue.push(resolve));
}

/** Hands the slot to the next waiting caller, if any. */
function releaseCliSlot(): void {
  const next = cliQueue.shift();
  if (next === undefined) cliRunning--;
  else next();
}

/**
 * {@link runCli} with the whole output (resolves once the process exited and its stdout and stderr
 * closed), for tests that start several at once (`Promise.all`): at most {@link CLI_SLOTS} run at a
 * time, and `timeoutMs` (default 15 s) counts from the process's start.
 */
export async function runCliToEnd(
  args: string[],
  options: { timeoutMs?: number; script?: string; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  await takeCliSlot();
  try {
    return await runCli(args, options.timeoutMs, options.script, options.cwd, 'close');
  } finally {
    releaseCliSlot();
  }
}

/** Spawns `meshlet run` on a config and waits until it logs "meshlet started". */
export async function spawnMeshlet(input: ConfigInput, extraArgs: string[] = []): Promise<MeshletProcess> {
  const file = writeConfig(withFreePorts(input));
  const proc = spawn(process.execPath, [CLI, 'run', '--config', file, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const started = new Promise<{ outbound: number; admin: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`meshlet did not start: ${stderr.join('')}`)), 15_000);
    onLines(proc.stdout!, (line) => {
      stdout.push(line);
      try {
        const entry = JSON.parse(line) as {
          msg?: string;
          outbound?: { port: number };
          admin?: { port: number };
        };
        if (entry.msg === 'meshlet started') {
          clearTimeout(timer);
          resolve({ outbound: entry.outbound!.port, admin: entry.admin!.port });
        }
      } catch {
        // not JSON: keep it in stdout for the test to read
      }
    });
    proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
    exited.then((code) => reject(new Error(`meshlet exited with ${code}: ${stderr.join('')}`)));
  });
  const ports = await started;
  return {
    proc,
    configFile: file,
    outbound: `http://127.0.0.1:${ports.outbound}`,
    admin: `http://127.0.0.1:${ports.admin}`,
    stdout,
    stderr,
    exited,
  };
}

/** Resident set size of a process, bytes (Linux /proc). */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status);
  return kb === null ? 0 : Number(kb[1]) * 1024;
}
