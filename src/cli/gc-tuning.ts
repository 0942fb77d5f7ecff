// Restarts `meshlet run` in place with V8's young generation capped, as the daemon alone (no CLI parser loaded).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { handOver } from '../config/config-handover.ts';
import type { MeshletConfig } from '../config/schema.ts';
import { ADDED_ENV } from './app-env.ts';
import { passHeldHangup } from './hangup-hold.ts';
import { chooseMalloc } from './malloc-choice.ts';

/**
 * Young-generation semi-space cap, in MiB, that `meshlet run` applies unless told otherwise.
 * Node 24 lets the young generation grow to 32 MiB per semi-space under load, and dead I/O buffers
 * then wait for a collection that comes late: Node's default reached 230-250 MiB RSS under a
 * 32-connection closed loop where a 2 MiB cap stays near 125 MiB. 1 MiB saves another ~10 MiB at
 * 32 connections but falls off a cliff past ~100 requests in flight (each request's ~13 KiB no
 * longer fits the young generation and is promoted): at 128 connections it took 1.3-1.5× the CPU
 * per request of 2 MiB and 45 MiB more RSS. See bench/ and the README.
 */
export const DEFAULT_SEMI_SPACE_MB = 2;

/**
 * V8 flag the daemon gets with `MESHLET_MAIN_THREAD_JIT=1` (opt-in): Maglev and TurboFan compile
 * hot functions on the main thread instead of V8's worker threads. Compiler memory then comes from the
 * main malloc arena and goes back to it between compilations; from the workers it stays scattered
 * through their arenas among longer-lived blocks (about 20 MiB after a 32-connection closed loop,
 * 10.7 with this flag: RSS after load 108 → 95 MiB). The cost is that each compilation pauses the
 * event loop (up to ~10 ms, most in the first ~20 s of a traffic pattern): in the bench's fixed-rate
 * rounds the p99 and p50 were higher than with Node's default, which is why it is not the default.
 * See the README, "Memory and GC".
 */
export const MAIN_THREAD_JIT_FLAG = '--no-concurrent-recompilation';

/** The daemon's V8 flags besides the semi-space cap: {@link MAIN_THREAD_JIT_FLAG} when opted in and not set already. */
function jitFlags(env: NodeJS.ProcessEnv, given: readonly string[]): string[] {
  if (env.MESHLET_MAIN_THREAD_JIT !== '1') return [];
  if (given.some((a) => /concurrent[-_]recompilation/.test(a))) return [];
  return [MAIN_THREAD_JIT_FLAG];
}

/**
 * The daemon's own entry point: the bundle `npm run build` writes to dist/daemon/ (one module
 * graph: ~7 MiB less idle RSS than ~200 separate modules, README "Memory and GC"), else the
 * module beside this file (`.ts` when run from src/, `.js` from a dist/ built without the bundle).
 */
export function daemonEntry(here: string = import.meta.url): string {
  const bundled = fileURLToPath(new URL('../daemon/daemon-main.js', here));
  if (here.endsWith('.js') && existsSync(bundled)) return bundled;
  return fileURLToPath(new URL(`./daemon-main${here.slice(-3)}`, here));
}

/**
 * When the process was not started with `--max-semi-space-size`, re-executes it (same PID, via
 * `process.execve`) with the flag, taken from `MESHLET_SEMI_SPACE_MB` (default 2; `0` keeps
 * Node's default and the process), and {@link MAIN_THREAD_JIT_FLAG} when asked for, into
 * `daemon-main`: the new image runs the daemon without yargs and the other CLI-only modules (about
 * 5 MiB of RSS), on the malloc `MESHLET_MALLOC` picks (malloc-choice.ts: jemalloc when the host has
 * it), and with `config` handed over (config-handover.ts), so the daemon does not load the schema and
 * YAML parser either (about 7 MiB).
 * Returns only when no re-exec is needed or possible; then the caller runs the daemon in this process.
 * @param configFile `--config`, as the CLI parsed it.
 * @param logLevel `--log-level`, as the CLI parsed it.
 * @param config The config validated from `configFile`.
 * @param runArgs The rest of `meshlet run`'s arguments for daemon-main: the app's flags and
 *   `-- CMD…`. The variables added to the environment are listed in `MESHLET_ADDED_ENV`, so the app
 *   gets the environment meshlet was given.
 */
export function ensureGcTuning(
  configFile: string,
  logLevel: string,
  config: MeshletConfig,
  runArgs: readonly string[] = [],
): void {
  if (process.env.MESHLET_GC_TUNED === '1') return;
  const already = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) =>
    a.includes('max-semi-space-size'),
  );
  if (already) return;
  const mb = Number(process.env.MESHLET_SEMI_SPACE_MB ?? DEFAULT_SEMI_SPACE_MB);
  if (!Number.isFinite(mb) || mb <= 0) return;
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never })
    .execve;
  if (typeof execve !== 'function') return;
  const args = [
    process.execPath,
    `--max-semi-space-size=${mb}`,
    ...jitFlags(process.env, process.execArgv),
    ...process.execArgv,
    daemonEntry(),
    '--config',
    configFile,
    '--log-level',
    logLevel,
    ...runArgs,
  ];
  const malloc = chooseMalloc(process.env);
  const env: NodeJS.ProcessEnv = { ...process.env, ...malloc.env, MESHLET_GC_TUNED: '1' };
  const added = ['MESHLET_GC_TUNED', ...Object.keys(malloc.env)];
  if (process.env.MESHLET_GC_TUNED !== undefined) added.shift();
  passHeldHangup(env, added);
  env[ADDED_ENV] = added.join(',');
  handOver(env, configFile, config);
  execve.call(process, process.execPath, args, env);
}
