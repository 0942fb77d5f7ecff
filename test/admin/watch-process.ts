// A `meshlet upstreams --watch` process of the CLI tests: its output so far, its exit, and a wait for its first table.
import { type ChildProcess, spawn } from 'node:child_process';
import { CLI } from '../helpers/meshlet.ts';

/** A running `meshlet upstreams --watch …`. */
export interface WatchProcess {
  readonly proc: ChildProcess;
  /** stdout so far. */
  out(): string;
  /** stderr so far. */
  err(): string;
  /** Its exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Waits until stdout holds `text` (a table naming it), at most `ms`; else kills the process and throws. */
  shows(text: string, ms: number): Promise<void>;
}

/** Spawns `meshlet upstreams --watch` with `args` (e.g. `['--admin', url]`). */
export function spawnWatch(args: readonly string[]): WatchProcess {
  const proc = spawn(process.execPath, [CLI, 'upstreams', '--watch', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', resolve));
  return {
    proc,
    out: () => out,
    err: () => err,
    exited,
    async shows(text, ms) {
      const started = performance.now();
      while (!out.includes(text)) {
        if (performance.now() - started > ms) {
          proc.kill('SIGKILL');
          throw new Error(`no table naming ${text} in: ${out}${err}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}
