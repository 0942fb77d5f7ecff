// The app under `meshlet run -- CMD`: spawned in its own process group, signalled, stopped with a grace period.
import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';

/** Exit codes a shell uses when the command cannot run: not found (127), not executable (126). */
export const EXIT_NOT_FOUND = 127;
export const EXIT_NOT_EXECUTABLE = 126;

/** The app's exit status as a shell reports it: its code, or 128 + the signal's number. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
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
  /** Why it could not start, when it could not. */
  startError: string | undefined;

  /** Starts `command[0]` with the rest as arguments, stdio inherited. */
  constructor(command: readonly string[], env: NodeJS.ProcessEnv) {
    this.#child = spawn(command[0]!, command.slice(1), { stdio: 'inherit', env, detached: true });
    this.exited = new Promise((resolve) => {
      this.#child.once('error', (err: NodeJS.ErrnoException) => {
        if (!this.#running) return;
        this.#running = false;
        this.startError = `${command[0]}: ${err.code === 'ENOENT' ? 'command not found' : err.message}`;
        resolve(err.code === 'ENOENT' ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE);
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

  /** Sends `signal` to the app's process group (to the app alone if the group is gone). */
  signal(signal: NodeJS.Signals): void {
    const pid = this.#child.pid;
    if (!this.#running || pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      try {
        this.#child.kill(signal);
      } catch {
        // exited meanwhile
      }
    }
  }

  /**
   * Stops the app: `signal`, then SIGKILL to its group after `graceMs` if it still runs. Resolves
   * with its exit status.
   */
  async stop(signal: NodeJS.Signals, graceMs: number): Promise<number> {
    if (!this.#running) return this.exited;
    this.signal(signal);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), graceMs);
    });
    const outcome = await Promise.race([this.exited, grace]);
    clearTimeout(timer);
    if (outcome === 'expired') this.signal('SIGKILL');
    return this.exited;
  }

  /** Synchronous last resort when meshlet itself exits: SIGKILL to the group if it still runs. */
  killNow(): void {
    this.signal('SIGKILL');
  }
}
