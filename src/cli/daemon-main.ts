// `meshlet run` after the GC-tuning re-exec: the daemon alone, without the CLI parser in its memory.
import { LOG_LEVELS, type LogLevel } from '../telemetry/logger.ts';
import { appCommandUnsupported, EXIT, reportFailure, runCommand } from './run-command.ts';

/**
 * Runs the daemon from the arguments `ensureGcTuning` (gc-tuning.ts) passes: `--config FILE --log-level LEVEL`,
 * already checked by the CLI. Reports a bad config as `meshlet run` does (stderr, exit 2).
 * Resolves with the process exit code.
 */
export async function daemonMain(argv: readonly string[]): Promise<number> {
  const dashes = argv.indexOf('--');
  if (dashes !== -1 && dashes < argv.length - 1) {
    process.stderr.write(appCommandUnsupported(argv.slice(dashes + 1)));
    return EXIT.usage;
  }
  const config = valueOf(argv, '--config');
  const level = valueOf(argv, '--log-level') ?? 'info';
  if (config === undefined || !(LOG_LEVELS as readonly string[]).includes(level)) {
    process.stderr.write(
      `meshlet: daemon entry needs --config FILE and --log-level LEVEL, got: ${argv.join(' ')}\n`,
    );
    return EXIT.usage;
  }
  try {
    return await runCommand(config, level as LogLevel);
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
