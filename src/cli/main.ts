// Entry point of the `meshlet` command: holds SIGHUP first, then loads the verbs (yargs, the config loader) and runs them.
import { holdHangups } from './hangup-hold.ts';

/**
 * Runs the CLI with `argv` (without node and script); see `runVerbs` (verbs.ts). A SIGHUP from the
 * first moment on is held (hangup-hold.ts): loading the verbs takes about half a second, and a
 * reload asked for meanwhile is applied once the daemon runs instead of ending the process.
 */
export async function main(argv: string[]): Promise<void> {
  holdHangups();
  const { runVerbs } = await import('./verbs.ts');
  await runVerbs(argv);
}

if (import.meta.main) await main(process.argv.slice(2));
