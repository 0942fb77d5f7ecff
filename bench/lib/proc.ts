// Child processes of a bench run: spawn, wait for a port, read CPU and RSS from /proc, kill them all.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';

/** Every child this run started and has not seen exit; `killAll` ends them. */
const children = new Set<ChildProcess>();

/** Clock ticks per second of utime/stime in /proc/PID/stat (`getconf CLK_TCK`, 100 on Linux). */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * Variables this host sets for every process that meshlet's image (Dockerfile: node:24-slim) does
 * not: `NODE_EXTRA_CA_CERTS` makes every Node process read and parse a CA bundle at start (~0.8 MiB
 * of RSS each with Debian's). Removed from this process's environment, so each measured process
 * (meshlet, the baselines and the upstreams alike) starts as it would in the image; returns the
 * names removed, for the report.
 */
export function asInImage(): string[] {
  const removed = ['NODE_EXTRA_CA_CERTS'].filter((name) => process.env[name] !== undefined);
  for (const name of removed) delete process.env[name];
  return removed;
}

/** Options of {@link start}. */
export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** File that receives the child's stdout and stderr; default /dev/null. */
  logFile?: string;
}

/** Starts a long-lived child (a server) whose output goes to a file; it is killed by `killAll`. */
export function start(command: string, args: readonly string[], options: StartOptions = {}): ChildProcess {
  const out = openSync(options.logFile ?? '/dev/null', 'a');
  const child = spawn(command, args, {
    stdio: ['ignore', out, out],
    env: options.env ?? process.env,
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Result of {@link runBounded}. */
export interface Bounded {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** Runs a command to completion, killed after `timeoutMs` (every load is bounded in time). */
export function runBounded(
  command: string,
  args: readonly string[],
  timeoutMs: number,
  env?: NodeJS.ProcessEnv,
): Promise<Bounded> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      children.delete(child);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ stdout, stderr, code });
    });
  });
}

/** Stops one child: SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Stops every child this run started (at the end, and on SIGINT/SIGTERM). */
export async function killAll(): Promise<void> {
  resumeAll();
  await Promise.all([...children].map((c) => stop(c)));
}

/** Children paused by {@link aloneWith} right now. */
const paused = new Set<ChildProcess>();

function resumeAll(): void {
  for (const c of paused) c.kill('SIGCONT');
  paused.clear();
}

/**
 * Runs `measure` with every other child of this run paused (SIGSTOP), then resumes them (SIGCONT).
 * An idle Node server is not idle for the CPU: for tens of seconds after a load its GC shrinks the
 * heap (mark-compacts of 5-30 ms), and in the fixed-rate phase those landed on the CPU of whichever
 * server was being measured, as its p99. Connections stay open while a process is paused.
 * @param keep PIDs that keep running: the measured server and the upstream it calls.
 */
export async function aloneWith<T>(keep: ReadonlySet<number>, measure: () => Promise<T>): Promise<T> {
  for (const c of children) {
    if (c.pid === undefined || keep.has(c.pid) || c.exitCode !== null) continue;
    if (c.kill('SIGSTOP')) paused.add(c);
  }
  try {
    return await measure();
  } finally {
    resumeAll();
  }
}

/** Kills every child synchronously (from an `exit` handler, where nothing async runs). */
export function killAllNow(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once 127.0.0.1:port accepts connections; rejects after `timeoutMs` or when `child` exits. */
export async function waitForPort(port: number, timeoutMs = 15_000, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child !== undefined && child.exitCode !== null) {
      throw new Error(`process exited with code ${child.exitCode} before port ${port} opened`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
    await sleep(100);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** CPU time a process has used so far (user + system), in seconds; NaN when unreadable. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start at ")"; utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** Resident set size of a process, MiB; NaN when unreadable. */
export function rssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m === null ? Number.NaN : Number(m[1]) / 1024;
  } catch {
    return Number.NaN;
  }
}

/** Full path of an executable on PATH (also /usr/sbin), or null. */
export function which(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    try {
      execFileSync('test', ['-x', `${dir}/${name}`]);
      return `${dir}/${name}`;
    } catch {
      // not here
    }
  }
  return null;
}

/** First line of a command's output (stdout, else stderr), or null when it cannot run. */
export function versionOf(command: string, args: readonly string[]): string | null {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  if (r.error !== undefined) return null;
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim();
  return text === '' ? null : text.split('\n')[0]!.trim();
}

/** util-linux `taskset`, to pin processes to CPUs (the fixed-rate phase), or null. */
export const TASKSET = which('taskset');

/**
 * Pins every thread of a running process to `cpus` (a taskset list such as `1` or `0-1`).
 * Returns false when it cannot (no taskset, process gone, CPUs not allowed here).
 */
export function pinProcess(pid: number, cpus: string): boolean {
  if (TASKSET === null) return false;
  try {
    execFileSync(TASKSET, ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
