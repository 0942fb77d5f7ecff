// `meshlet run` after the GC-tuning re-exec: the daemon alone, without the CLI parser in its memory.
import type { LogLevel } from '../telemetry/logger.ts';
import type { AppCommand } from './run-command.ts';
import { holdHangups } from './hangup-hold.ts';

/**
 * Runs the daemon from the arguments `ensureGcTuning` (gc-tuning.ts) passes: `--config FILE
 * --log-level LEVEL [--export-proxy-env] [--ready-timeout MS] [-- CMD…]`, already checked by the
 * CLI; with a command, the app runs under meshlet (app-wrapper.ts). Reports a bad config as
 * `meshlet run` does (stderr, exit 2). Resolves with the process exit code.
 *
 * A SIGHUP that comes while the daemon's modules load (a few hundred ms), or that the CLI held before
 * the re-exec, is held (hangup-hold.ts) and applied once `runCommand` runs: SIGHUP's default action
 * would end the process. The modules are imported after the hold is in place.
 */
export async function daemonMain(argv: readonly string[]): Promise<number> {
  holdHangups();
  const [{ LOG_LEVELS }, { DEFAULT_READY_TIMEOUT_MS, EXIT, reportFailure, runCommand }] = await Promise.all([
    import('../telemetry/logger.ts'),
    import('./run-command.ts'),
  ]);
  const dashes = argv.indexOf('--');
  const own = dashes === -1 ? argv : argv.slice(0, dashes);
  const command = dashes === -1 ? [] : argv.slice(dashes + 1);
  const config = valueOf(own, '--config');
  const level = valueOf(own, '--log-level') ?? 'info';
  const readyTimeout = Number(valueOf(own, '--ready-timeout') ?? DEFAULT_READY_TIMEOUT_MS);
  if (
    config === undefined ||
    !(LOG_LEVELS as readonly string[]).includes(level) ||
    !Number.isFinite(readyTimeout) ||
    (dashes !== -1 && command.length === 0)
  ) {
    process.stderr.write(
      `meshlet: daemon entry needs --config FILE and --log-level LEVEL [--export-proxy-env] [--ready-timeout MS] [-- CMD…], got: ${argv.join(' ')}\n`,
    );
    return EXIT.usage;
  }
  const app: AppCommand | undefined =
    command.length === 0
      ? undefined
      : { command, exportProxyEnv: own.includes('--export-proxy-env'), readyTimeoutMs: readyTimeout };
  try {
    return await runCommand(config, level as LogLevel, undefined, app);
  } catch (err) {
    return reportFailure(err);
  }
}

function valueOf(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i === -1 ? undefined : argv[i + 1];
}

if (import.meta.main) {
  const code = await daemonMain(process.argv.slice(2));
  process.exitCode = code;
  setImmediate(() => process.exit(code));
}
