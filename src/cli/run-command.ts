// `meshlet run`: loads config, starts the daemon, wires signals (SIGTERM/SIGINT drain, SIGHUP reload) and the config file's watch, and runs the app after `--`.
import { takeHandedOver } from '../config/config-handover.ts';
import { type ConfigWatch, watchConfigFile } from '../config/config-watch.ts';
import type { MeshletConfig } from '../config/schema.ts';
import { Daemon, StartAbortedError } from '../daemon.ts';
import { createLogger, flushLogger, type LogLevel } from '../telemetry/logger.ts';
import { EXIT } from './exit-codes.ts';

export { EXIT, reportFailure } from './exit-codes.ts';

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
 * How long before this image started the `meshlet run` that handed its config over may have read
 * the file, ms (the read, one event-loop turn, the re-exec; file times also lag the clock by up
 * to a tick): a config file changed since then is reloaded once the daemon runs.
 */
const HANDOVER_READ_MARGIN_MS = 50;

/**
 * The config file's watch (config-watch.ts), armed before the daemon starts: its reloads go through
 * `daemon.reload` once `running` resolves with the daemon (a change while meshlet starts is held
 * until then, as a SIGHUP is), and resolve false when it resolves null (meshlet did not start).
 */
function watchConfig(configFile: string, running: Promise<Daemon | null>, readBefore: number): ConfigWatch {
  return watchConfigFile(configFile, {
    reload: async (trigger) => (await running)?.reload(trigger) ?? false,
    readBefore,
  });
}

/**
 * Runs the daemon until a signal stops it. Resolves with the process exit code. SIGTERM or SIGINT
 * while the daemon starts stops it too: before registration the start is cut short; after, the
 * start finishes and the daemon shuts down as usual (deregistering); either way exit 0.
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
  const handedOver = loaded === undefined ? takeHandedOver(configFile) : undefined;
  // When the running config was read at the latest: the file changed since is reloaded at once.
  const readBefore =
    loaded !== undefined
      ? performance.timeOrigin
      : handedOver !== undefined
        ? performance.timeOrigin - HANDOVER_READ_MARGIN_MS
        : Date.now() - HANDOVER_READ_MARGIN_MS;
  const config =
    loaded ?? handedOver ?? (await import('../config/load-config.ts')).loadConfigFile(configFile);
  const logger = createLogger(logLevel);
  // The config file's changes reload as SIGHUP does. Watched from now, before the daemon starts (and
  // logs "meshlet started"): a change while it starts is applied once it runs.
  let daemonRunning!: (daemon: Daemon | null) => void;
  const running = new Promise<Daemon | null>((resolve) => (daemonRunning = resolve));
  const watch = watchConfig(configFile, running, readBefore);
  const notStarted = (): void => {
    watch.close();
    daemonRunning(null);
  };
  // SIGHUP's default action ends the process: one while the daemon starts (which may wait on
  // Consul for certificates) would kill it. It is held and applied once the daemon runs.
  let hangupWhileStarting = false;
  const holdHangup = () => {
    hangupWhileStarting = true;
  };
  // SIGTERM's and SIGINT's would kill it too, and leave a registration made meanwhile in Consul.
  let stopWhileStarting: NodeJS.Signals | null = null;
  const startAbort = new AbortController();
  const holdStop = (signal: NodeJS.Signals) => {
    if (stopWhileStarting !== null) return;
    stopWhileStarting = signal;
    logger.info({ msg: 'stop signal while meshlet was starting: stopping', signal });
    startAbort.abort();
  };
  process.on('SIGHUP', holdHangup);
  process.on('SIGTERM', holdStop);
  process.on('SIGINT', holdStop);
  const releaseStartHandlers = (): void => {
    process.off('SIGHUP', holdHangup);
    process.off('SIGTERM', holdStop);
    process.off('SIGINT', holdStop);
  };
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, { logger, configFile, abort: startAbort.signal });
  } catch (err) {
    releaseStartHandlers();
    notStarted();
    if (err instanceof StartAbortedError) {
      logger.info({ msg: 'meshlet stopped while starting', signal: stopWhileStarting });
      flushLogger(logger);
      return EXIT.ok;
    }
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
  const stoppedEarly = stopWhileStarting as NodeJS.Signals | null;
  if (stoppedEarly !== null) {
    notStarted();
    // Registration had begun: a full shutdown (critical, drain delay, deregister). No app was started.
    const code = await started.shutdown(stoppedEarly, { skipDrainDelay: app !== undefined }).then(
      () => EXIT.ok,
      (err: Error) => {
        logger.error({ msg: 'shutdown failed', reason: err.message });
        return EXIT.runtime;
      },
    );
    releaseStartHandlers();
    flushLogger(logger);
    return code;
  }
  // The watch stops when a shutdown begins (the daemon reloads nothing then either); SIGHUP's
  // reloads go through it, so it knows the text in force.
  daemonRunning(started);
  const reload = (): void => void watch.reload('signal');
  // Called once the running signal handlers are in place. Removing the last listener of a signal
  // closes Node's watcher, and a signal it had caught but not dispatched yet would be lost: the
  // holding listeners go only after the next ones are added. A stop signal held in between is
  // raised again for the running handlers.
  const pendingReload = (): void => {
    releaseStartHandlers();
    const late = stopWhileStarting as NodeJS.Signals | null;
    if (late !== null) process.kill(process.pid, late);
    if (!hangupWhileStarting) return;
    logger.info({ msg: 'SIGHUP came while meshlet was starting: reloading now' });
    reload();
  };
  if (app !== undefined) {
    // Stop signals close the watch before the wrapper drains; so does the end of the run.
    const closeWatch = (): void => watch.close();
    process.on('SIGTERM', closeWatch);
    process.on('SIGINT', closeWatch);
    const { runApp } = await import('./app-wrapper.ts');
    return runApp(daemon, app, logger, pendingReload, reload).finally(closeWatch);
  }
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      watch.close();
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
    // `on`, not `once`: a second stop signal joins the drain under way (shutdown is idempotent)
    // instead of taking the default action, which would end the process mid-drain.
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', reload);
    pendingReload();
  });
}
