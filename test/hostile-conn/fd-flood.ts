// Holds a spawned meshlet at a low file-descriptor limit (prlimit) and floods one of its listeners until it has none left; for the EMFILE tests.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';

/** The fd limit meshlet runs under in these tests. */
export const FD_LIMIT = 256;
/** Connections thrown at it: more than the limit, bounded. */
export const FLOOD = 400;
/** The warning meshlet writes when a connection it opens fails with EMFILE/ENFILE. */
export const FD_WARNING = 'meshlet out of file descriptors';

/** Open file descriptors of process `pid` (Linux /proc). */
export const fdsOf = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** Sets the running process `pid`'s soft and hard fd limit to {@link FD_LIMIT}. */
export function limitFds(pid: number): void {
  execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${FD_LIMIT}:${FD_LIMIT}`]);
}

/** Polls `check` every 50 ms until it holds; throws naming `what` after `ms`. */
export async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Opens {@link FLOOD} connections to 127.0.0.1:port and waits until process `pid` holds
 * {@link FD_LIMIT} descriptors; resolves with a function that closes them all and waits until
 * `pid` is back under half the limit.
 */
export async function floodUntilExhausted(port: number, pid: number): Promise<() => Promise<void>> {
  const sockets: Socket[] = [];
  const release = async (): Promise<void> => {
    for (const s of sockets) s.destroy();
    await until(() => fdsOf(pid) < FD_LIMIT / 2, 'meshlet to free its fds');
  };
  try {
    for (let i = 0; i < FLOOD; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      sockets.push(s);
    }
    await until(() => fdsOf(pid) >= FD_LIMIT, `meshlet to reach ${FD_LIMIT} fds (at ${fdsOf(pid)})`);
  } catch (err) {
    for (const s of sockets) s.destroy();
    throw err;
  }
  return release;
}
