// Whether a spawned meshlet has re-executed into its daemon image (execve, the same PID): for the tests that act while that image loads.
import { readFileSync } from 'node:fs';
import { until } from './wrapper-helpers.ts';

/** Whether process `pid` runs the daemon image (`daemon-main` in /proc/PID/cmdline); false once it is gone. */
export function inDaemonImage(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('daemon-main');
  } catch {
    return false;
  }
}

/** Waits until process `pid` runs the daemon image; rejects after 10 s. */
export async function untilDaemonImage(pid: number): Promise<void> {
  await until(() => inDaemonImage(pid), 10_000, 'meshlet re-executed into the daemon image');
}
