// The app under `meshlet run -- CMD`: spawned in its own process group, signalled, stopped with a grace period.
import { type ChildProcess, spawn } from 'node:child_process';
import { type Stats, statSync } from 'node:fs';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { groupRunning } from './app-group.ts';

/** How often the app's process group is looked at while it is stopped, ms. */
const GROUP_POLL_MS = 50;

/** Exit codes a shell uses when the command cannot run: not found (127), not executable (126). */
export const EXIT_NOT_FOUND = 127;
export const EXIT_NOT_EXECUTABLE = 126;

/** The app's exit status as a shell reports it: its code, or 128 + the signal's number. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
}

/** `file`'s stat, or undefined when it cannot be looked at. */
function statOrUndefined(file: string): Stats | undefined {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}

/**
 * Why `file` could not be started and the status a shell gives then (bash's words): 127 when it
 * is not there ("command not found"), or is there but what it needs to run is not (its `#!`
 * interpreter or its loader: "required file not found"); 126 when it is not executable
 * ("permission denied", "is a directory"), or any other reason.
 */
export function startFailure(file: string, err: NodeJS.ErrnoException): { reason: string; status: number } {
  const stat = file.includes('/') ? statOrUndefined(file) : undefined;
  if (err.code === 'ENOENT') {
    if (stat === undefined) return { reason: 'command not found', status: EXIT_NOT_FOUND };
    return {
      reason: 'cannot execute: required file not found (its #! interpreter or loader is missing)',
      status: EXIT_NOT_FOUND,
    };
  }
  if (err.code === 'EACCES') {
    const reason = stat?.isDirectory() === true ? 'is a directory' : 'permission denied (not executable)';
    return { reason, status: EXIT_NOT_EXECUTABLE };
  }
  return { reason: err.message, status: EXIT_NOT_EXECUTABLE };
}

/**
 * One run of the app. It gets its own process group, so a terminal's Ctrl-C reaches meshlet
 * alone (which applies the shutdown order), and signals go to the whole group (a `sh -c` or
 * `npm start` wrapper and what it started).
 */
export class AppProcess {
  readonly #child: ChildProcess;
  /** Resolves with the exit status once the app exited (or could not start: 127/126). */
  readonly exited: Promise<number>;
  #running = true;
  /** Set once no process of the app's group is left (kill(-pgid) found none). */
  #groupGone = false;
  /** Why it could not start, when it could not. */
  startError: string | undefined;

  /** Starts `command[0]` with the rest as arguments, stdio inherited. */
  constructor(command: readonly string[], env: NodeJS.ProcessEnv) {
    this.#child = spawn(command[0]!, command.slice(1), { stdio: 'inherit', env, detached: true });
    this.exited = new Promise((resolve) => {
      this.#child.once('error', (err: NodeJS.ErrnoException) => {
        if (!this.#running) return;
        this.#running = false;
        const failure = startFailure(command[0]!, err);
        this.startError = `${command[0]}: ${failure.reason}`;
        resolve(failure.status);
      });
      this.#child.once('exit', (code, signal) => {
        this.#running = false;
        resolve(exitStatus(code, signal));
      });
    });
  }

  /** The app's process id (undefined when it could not start). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Whether it still runs. */
  get running(): boolean {
    return this.#running;
  }

  /**
   * Whether the app's process group still has a running process: the app, or a child it left
   * there after it exited (a `sh -c 'worker & server'`).
   */
  get groupRunning(): boolean {
    const pid = this.#child.pid;
    if (pid === undefined || this.#groupGone) return false;
    if (this.#running) return true;
    this.#groupGone = !groupRunning(pid);
    return !this.#groupGone;
  }

  /**
   * Sends `signal` to the app's process group (to the app alone if the group is gone) — also once
   * the app exited, while processes it left in its group run.
   */
  signal(signal: NodeJS.Signals): void {
    const pid = this.#child.pid;
    if (pid === undefined || this.#groupGone) return;
    try {
      process.kill(-pid, signal);
    } catch (err) {
      if (!this.#running) {
        this.#groupGone = (err as NodeJS.ErrnoException).code === 'ESRCH';
        return;
      }
      try {
        this.#child.kill(signal);
      } catch {
        // exited meanwhile
      }
    }
  }

  /**
   * Stops the app and its process group: `signal` to the group, then SIGKILL to it when the app or
   * a process it left in the group still runs after `graceMs`, ms (dumb-init's rule: what the app
   * started does not outlive it). Also for an app that exited on its own, whose group still has
   * processes. Resolves with the app's exit status.
   */
  async stop(signal: NodeJS.Signals, graceMs: number): Promise<number> {
    if (!this.groupRunning) return this.exited;
    const deadline = performance.now() + graceMs;
    this.signal(signal);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), graceMs);
    });
    let outcome = await Promise.race([this.exited, grace]);
    while (outcome !== 'expired' && this.groupRunning) {
      const left = deadline - performance.now();
      if (left <= 0) outcome = 'expired';
      else await sleep(Math.min(GROUP_POLL_MS, left));
    }
    clearTimeout(timer);
    if (outcome === 'expired') this.signal('SIGKILL');
    return this.exited;
  }

  /**
   * Synchronous last resort when meshlet itself exits: SIGKILL to the group while the app or a
   * process it left there may run.
   */
  killNow(): void {
    this.signal('SIGKILL');
  }
}
