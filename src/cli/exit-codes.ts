// The CLI's exit codes and how a verb's failure is reported: apart from `run-command.ts`, so a verb other than `run` never loads the daemon.
import { ConfigError } from '../errors/config-error.ts';

/** Exit codes of the CLI. */
export const EXIT = { ok: 0, runtime: 1, usage: 2 } as const;

/**
 * Reports a failure of a CLI verb on stderr and returns its exit code: a bad config names the key
 * (exit 2), anything else prints its stack (exit 1).
 */
export function reportFailure(err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`meshlet: invalid config: ${err.message}\n`);
    return EXIT.usage;
  }
  process.stderr.write(`meshlet: ${(err as Error).stack ?? String(err)}\n`);
  return EXIT.runtime;
}
