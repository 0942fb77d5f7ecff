// Holds SIGHUPs while meshlet loads, until the daemon's reload handler is in place: SIGHUP's default action would end the process.
/** Set in the re-executed daemon image's environment when a SIGHUP was held before the re-exec. */
export const HANGUP_HELD_ENV = 'MESHLET_HANGUP_HELD';

let held = false;
let holding = false;

function hold(): void {
  held = true;
}

/** On the next SIGHUP listener added (`runCommand`'s): steps aside and raises a held SIGHUP again for it. */
function handOver(event: string | symbol): void {
  if (event !== 'SIGHUP') return;
  process.off('newListener', handOver);
  // 'newListener' comes before the listener is added; ours goes only once that one is in place
  // (removing a signal's last listener closes Node's watcher, and a signal caught meanwhile is lost).
  process.nextTick(() => {
    process.off('SIGHUP', hold);
    holding = false;
    if (held) {
      held = false;
      process.kill(process.pid, 'SIGHUP');
    }
  });
}

/**
 * Holds SIGHUPs from now until the next SIGHUP listener is added (the daemon's, in `runCommand`),
 * then raises one that came meanwhile again for it: a reload asked for while meshlet loads its
 * modules or starts is applied once it runs. Called first by `main` (the CLI, before yargs and the
 * config loader load) and by `daemonMain` (the re-executed image, which inherits a hangup held
 * before the re-exec through {@link HANGUP_HELD_ENV}). Idempotent while holding.
 */
export function holdHangups(env: NodeJS.ProcessEnv = process.env): void {
  if (env[HANGUP_HELD_ENV] === '1') held = true;
  delete env[HANGUP_HELD_ENV];
  if (holding) return;
  holding = true;
  process.on('SIGHUP', hold);
  process.on('newListener', handOver);
}

/**
 * Resolves after one turn of the event loop, so a SIGHUP that came while the main thread was busy
 * (loading modules, reading the config) reaches the hold: libuv delivers signals to JS only from its
 * poll phase, and one still waiting there when `meshlet run` re-executes itself would be lost.
 */
export function settleHangups(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Adds {@link HANGUP_HELD_ENV} to the environment of the image `meshlet run` re-executes into when a
 * SIGHUP is held, so that image applies it; lists it in `MESHLET_ADDED_ENV` (the app does not get it).
 */
export function passHeldHangup(env: NodeJS.ProcessEnv, added: string[]): void {
  if (!held) return;
  env[HANGUP_HELD_ENV] = '1';
  added.push(HANGUP_HELD_ENV);
}
