// `meshlet run -- CMD`: the app starts once meshlet is ready, is stopped before meshlet, and its exit code is meshlet's.
import { PROXY_ONLY, failingChecks } from '../admin/readiness.ts';
import type { Daemon } from '../daemon.ts';
import { flushLogger, type Logger } from '../telemetry/logger.ts';
import { appEnvironment, listenerUrl } from './app-env.ts';
import { AppProcess } from './app-process.ts';
import { EXIT } from './exit-codes.ts';
import type { AppCommand } from './run-command.ts';

/** How often readiness is checked while the app waits to start, ms. */
const READY_POLL_MS = 10;
/** How often the wait for readiness logs what is missing, ms. */
const READY_LOG_MS = 5000;

type Stop = { signal: NodeJS.Signals };

/**
 * Signals meshlet passes to the app untouched (besides SIGHUP, which also reloads meshlet):
 * SIGUSR2 and SIGQUIT. Left to their default action they would end meshlet alone. SIGUSR1 stays
 * Node's (it opens the inspector).
 */
export const PASSED_ON: readonly NodeJS.Signals[] = ['SIGUSR2', 'SIGQUIT'];

/**
 * Waits until meshlet's own readiness holds (`/ready` without the app's check: registry synced,
 * listeners up, certificates loaded). Resolves 'ready', 'timeout', or the signal that came first.
 */
function untilReady(
  daemon: Daemon,
  timeoutMs: number,
  stopped: Promise<Stop>,
  logger: Logger,
): Promise<'ready' | 'timeout' | Stop> {
  return new Promise((resolve) => {
    const started = performance.now();
    let lastLog = started;
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (outcome: 'ready' | 'timeout' | Stop) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    void stopped.then(finish);
    const check = () => {
      if (done) return;
      const r = daemon.readiness(PROXY_ONLY);
      if (r.ok) return finish('ready');
      const now = performance.now();
      if (timeoutMs > 0 && now - started >= timeoutMs) return finish('timeout');
      if (now - lastLog >= READY_LOG_MS) {
        lastLog = now;
        logger.info({
          msg: 'waiting for meshlet to be ready before starting the app',
          failing: failingChecks(r),
        });
      }
      timer = setTimeout(check, READY_POLL_MS);
    };
    check();
  });
}

/**
 * Runs `app` under the started `daemon` and resolves with the process exit code:
 * - the app starts once meshlet is ready, with `MESHLET_OUTBOUND` and `MESHLET_ADMIN` (app-env.ts);
 *   not ready within `readyTimeoutMs` → meshlet stops, the app never starts, exit 1;
 * - SIGTERM/SIGINT: peers are told and the drain delay passes, the inbound listener closes, the
 *   app gets the same signal and `shutdown.appGracePeriod` (then SIGKILL) while the outbound
 *   listener serves it, then meshlet drains; the exit code is the app's. A second signal goes to
 *   the app at once. `shutdown.appGracePeriod` is read at the stop, so a reload's value applies;
 * - SIGHUP: meshlet reloads its config (`reload`; default `daemon.reload()`) and the app gets SIGHUP;
 * - SIGUSR2, SIGQUIT: passed to the app (see {@link PASSED_ON}); meshlet exits when the app does;
 * - the app exits on its own: meshlet drains at once (no drain delay: nothing is left to serve
 *   peers) and exits with the app's code (128 + signal number when a signal ended it; 127 when
 *   the command is not found, 126 when it cannot be executed). Processes the app left in its
 *   process group get SIGTERM, then SIGKILL after `shutdown.appGracePeriod`, as on a stop.
 */
export async function runApp(
  daemon: Daemon,
  app: AppCommand,
  logger: Logger,
  afterHandlers: () => void = () => undefined,
  reload: () => void = () => void daemon.reload(),
): Promise<number> {
  let onStop!: (stop: Stop) => void;
  const stopped = new Promise<Stop>((resolve) => (onStop = resolve));
  let child: AppProcess | null = null;
  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (shuttingDown && child !== null) {
      logger.info({ msg: 'signal during shutdown: passed to the app now', signal });
      child.signal(signal);
    }
    onStop({ signal });
  };
  const onHangup = () => {
    reload();
    child?.signal('SIGHUP');
  };
  // Signals whose default action would end meshlet and leave the app running on its own (it is in
  // its own process group): passed to the app, as tini and dumb-init do; the app decides. Before
  // the app runs they stop meshlet as SIGTERM does.
  const onPassOn = (signal: NodeJS.Signals) => {
    if (child !== null && child.running) {
      logger.info({ msg: 'signal passed to the app', signal });
      child.signal(signal);
    } else onStop({ signal });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHangup);
  for (const signal of PASSED_ON) process.on(signal, onPassOn);
  process.on('exit', () => child?.killNow());
  afterHandlers();

  const finish = async (code: number, reason: string, options = {}): Promise<number> => {
    shuttingDown = true;
    await daemon.shutdown(reason, options).catch((err: Error) => {
      logger.error({ msg: 'shutdown failed', reason: err.message });
    });
    flushLogger(logger);
    return code;
  };

  const gate = await untilReady(daemon, app.readyTimeoutMs, stopped, logger);
  if (gate === 'timeout') {
    const failing = failingChecks(daemon.readiness(PROXY_ONLY));
    logger.error({ msg: 'meshlet not ready in time; the app was not started', failing });
    process.stderr.write(
      `meshlet: not ready within ${app.readyTimeoutMs} ms (${failing}); the app was not started\n`,
    );
    return finish(EXIT.runtime, 'not ready', { skipDrainDelay: true });
  }
  if (gate !== 'ready') return finish(EXIT.ok, gate.signal, { skipDrainDelay: true });

  const addresses = daemon.addresses();
  const env = appEnvironment(
    process.env,
    {
      outbound: listenerUrl(addresses.outbound.address, addresses.outbound.port),
      admin: listenerUrl(addresses.admin.address, addresses.admin.port),
    },
    app.exportProxyEnv,
  );
  // Read when the app is stopped, not now: a reload since (SIGHUP, the config file) may have changed it.
  const graceMs = (): number => daemon.config.shutdown.appGracePeriod;
  const started = new AppProcess(app.command, env);
  child = started;
  logger.info({ msg: 'app started', command: app.command, pid: started.pid ?? null });

  const first = await Promise.race([
    started.exited.then((code) => ({ exited: code })),
    stopped.then((stop) => ({ stop })),
  ]);
  if ('exited' in first) {
    if (started.startError !== undefined)
      process.stderr.write(`meshlet: cannot start the app: ${started.startError}\n`);
    logger.warn({ msg: 'app exited; meshlet drains and exits with its code', code: first.exited });
    // What it left in its process group is stopped as the app would be (dumb-init's rule), while
    // the outbound listener still serves it.
    const stopLeftovers = async () => {
      if (!started.groupRunning) return;
      const grace = graceMs();
      logger.warn({
        msg: 'the app left processes in its process group: stopping them',
        signal: 'SIGTERM',
        appGracePeriodMs: grace,
      });
      await started.stop('SIGTERM', grace);
    };
    return finish(first.exited, 'app exited', { skipDrainDelay: true, stopApp: stopLeftovers });
  }
  const { signal } = first.stop;
  let code = 0;
  const stopApp = async () => {
    const grace = graceMs();
    logger.info({ msg: 'stopping the app', signal, appGracePeriodMs: grace });
    code = await started.stop(signal, grace);
    logger.info({ msg: 'app exited', code });
  };
  await finish(0, signal, { stopApp, drainDelayEnds: started.exited });
  return code;
}
