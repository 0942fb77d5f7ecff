// `meshlet run`: loads config, starts the daemon, wires signals (SIGTERM/SIGINT drain, SIGHUP reload), and runs the app after `--`.
import { takeHandedOver } from '../config/config-handover.ts';
import type { MeshletConfig } from '../config/schema.ts';
import { ConfigError } from '../errors/config-error.ts';
import { Daemon } from '../daemon.ts';
import { createLogger, flushLogger, type LogLevel } from '../telemetry/logger.ts';

/** Exit codes of the CLI. */
export const EXIT = { ok: 0, runtime: 1, usage: 2 } as const;

/** The app `meshlet run --config FILE [--export-proxy-env] -- CMD…` runs under meshlet. */
export interface AppCommand {
  /** What followed `--`: the program and its arguments. */
  command: string[];
  /** Also set HTTP_PROXY/http_proxy and NO_PROXY/no_proxy for the app. Default false. */
  exportProxyEnv: boolean;
  /** Longest wait for meshlet to be ready before giving up without starting the app, ms; 0 = no limit. */
  readyTimeoutMs: number;
}

/** `--ready-timeout`'s default, ms: as long as Istio's `pilot-agent wait`. */
export const DEFAULT_READY_TIMEOUT_MS = 60_000;

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

/**
 * Runs the daemon until a signal stops it. Resolves with the process exit code.
 * @param loaded The config already validated from `configFile` in this process; else the one
 *   `meshlet run` handed over across the re-exec; else the file is loaded (and validated) now.
 * @param app The app to run under meshlet (app-wrapper.ts); then the exit code is the app's.
 */
export async function runCommand(
  configFile: string,
  logLevel: LogLevel,
  loaded?: MeshletConfig,
  app?: AppCommand,
): Promise<number> {
  // ConfigError → exit 2 in the caller. The loader (zod, yaml) is imported only when needed.
  const config =
    loaded ??
    takeHandedOver(configFile) ??
    (await import('../config/load-config.ts')).loadConfigFile(configFile);
  const logger = createLogger(logLevel);
  // SIGHUP's default action ends the process: one while the daemon starts (which may wait on
  // Consul for certificates) would kill it. It is held and applied once the daemon runs.
  let hangupWhileStarting = false;
  const holdHangup = () => {
    hangupWhileStarting = true;
  };
  process.on('SIGHUP', holdHangup);
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, { logger, configFile });
  } catch (err) {
    process.off('SIGHUP', holdHangup);
    const e = err as NodeJS.ErrnoException;
    const reason = e.code === 'EADDRINUSE' ? `address in use (${e.message})` : e.message;
    logger.fatal({ msg: 'meshlet failed to start', reason });
    flushLogger(logger);
    process.stderr.write(
      `meshlet: cannot start: ${reason}${app === undefined ? '' : '; the app was not started'}\n`,
    );
    return EXIT.runtime;
  }
  const started = daemon;
  // Called once the running SIGHUP handler is in place. Removing the last listener of a signal
  // closes Node's watcher, and a signal it had caught but not dispatched yet would be lost: the
  // holding listener goes only after the next one is added.
  const pendingReload = (): void => {
    process.off('SIGHUP', holdHangup);
    if (!hangupWhileStarting) return;
    logger.info({ msg: 'SIGHUP came while meshlet was starting: reloading now' });
    void started.reload();
  };
  if (app !== undefined) return (await import('./app-wrapper.ts')).runApp(daemon, app, logger, pendingReload);
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      daemon.shutdown(signal).then(
        () => {
          flushLogger(logger);
          resolve(EXIT.ok);
        },
        (err: Error) => {
          logger.error({ msg: 'shutdown failed', reason: err.message });
          flushLogger(logger);
          resolve(EXIT.runtime);
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.on('SIGHUP', () => void daemon.reload());
    pendingReload();
  });
}
