// Chooses the malloc the daemon image runs with: jemalloc when the host has it, else glibc's with meshlet's tunables.
import { existsSync } from 'node:fs';
import { ConfigError } from '../errors/config-error.ts';

/**
 * Where `libjemalloc.so.2` is looked for, in order: Debian/Ubuntu's `libjemalloc2` package
 * (amd64, arm64), then Fedora/RHEL, Alpine and a local build.
 */
export const JEMALLOC_PATHS: readonly string[] = [
  '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2',
  '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2',
  '/usr/lib64/libjemalloc.so.2',
  '/usr/lib/libjemalloc.so.2',
  '/usr/local/lib/libjemalloc.so.2',
];

/**
 * jemalloc's settings (`MALLOC_CONF`) the daemon gets with jemalloc unless `MALLOC_CONF` is set:
 * one arena for all threads (V8's compiler and GC workers free what they allocated into it, not
 * into arenas of their own); thread caches only for blocks up to 1 KiB (the default caches up to
 * 32 KiB per thread and held ~4 MiB more at idle); dirty pages back to the OS after 1 s, with no
 * lazy-free ("muzzy") stage that RSS would still count. After a 32-connection closed loop this held
 * RSS at 86-90 MiB where glibc malloc with {@link MALLOC_TUNABLES} held 103-115 MiB: glibc keeps
 * the compilers' freed scratch memory scattered through its per-thread arenas (README "Memory and GC").
 */
export const JEMALLOC_CONF = 'narenas:1,tcache_max:1024,dirty_decay_ms:1000,muzzy_decay_ms:0';

/**
 * glibc malloc settings the daemon gets when it runs on glibc's malloc, unless `GLIBC_TUNABLES` is
 * already set: blocks of 128 KiB and more are mapped on their own (glibc's default threshold climbs
 * to 32 MiB after the first large free), and free memory above 128 KiB at the top of the heap goes
 * back to the OS. Under a closed loop this kept RSS after load 5 MiB lower at no measurable cost; at
 * 64 KiB, Node's 64 KiB socket read buffers would each be an mmap and 1 MiB responses ran at half
 * speed. Ignored outside glibc.
 */
export const MALLOC_TUNABLES = 'glibc.malloc.trim_threshold=131072:glibc.malloc.mmap_threshold=131072';

/** The allocator choice and the variables to add to the daemon's environment for it. */
export interface MallocChoice {
  /**
   * `jemalloc` (found and preloaded), `library` (the one `MESHLET_MALLOC` names, preloaded), `glibc`
   * (the C library's own), or `preset` (the caller's `LD_PRELOAD` kept, nothing added to it).
   */
  readonly allocator: 'jemalloc' | 'library' | 'glibc' | 'preset';
  /** Variables to set; the caller's own values are never overwritten. */
  readonly env: Readonly<Record<string, string>>;
}

/**
 * The daemon's allocator, from `MESHLET_MALLOC`:
 * - unset or `auto` (default): jemalloc when one of {@link JEMALLOC_PATHS} exists, else glibc;
 * - `jemalloc`: jemalloc, and a {@link ConfigError} when none is found;
 * - `glibc`: the C library's malloc;
 * - an absolute path: that shared library, preloaded (a {@link ConfigError} when it does not exist).
 *
 * jemalloc comes with `LD_PRELOAD` and {@link JEMALLOC_CONF} as `MALLOC_CONF`, a named library with
 * `LD_PRELOAD` alone, glibc with {@link MALLOC_TUNABLES} as `GLIBC_TUNABLES`. A caller's
 * `LD_PRELOAD` wins (`preset`: nothing is preloaded), and so do its `MALLOC_CONF` and
 * `GLIBC_TUNABLES`. A value of `MESHLET_MALLOC` outside that list is refused even then.
 * @param env The environment `meshlet run` was given.
 * @param exists Whether a file exists (injected for tests).
 */
export function chooseMalloc(
  env: NodeJS.ProcessEnv,
  exists: (path: string) => boolean = existsSync,
): MallocChoice {
  const wanted = (env.MESHLET_MALLOC ?? '').trim() || 'auto';
  const named = wanted.startsWith('/');
  if (!named && !['auto', 'jemalloc', 'glibc'].includes(wanted)) {
    throw new ConfigError(
      'MESHLET_MALLOC',
      `"${wanted}" is not auto, jemalloc, glibc or an absolute path to a malloc library`,
      'environment',
    );
  }
  const glibc = (allocator: 'glibc' | 'preset'): MallocChoice => ({
    allocator,
    env: env.GLIBC_TUNABLES === undefined ? { GLIBC_TUNABLES: MALLOC_TUNABLES } : {},
  });
  if ((env.LD_PRELOAD ?? '') !== '') return glibc('preset');
  if (wanted === 'glibc') return glibc('glibc');
  if (named) {
    if (!exists(wanted)) throw new ConfigError('MESHLET_MALLOC', `${wanted}: no such file`, 'environment');
    return { allocator: 'library', env: { LD_PRELOAD: wanted } };
  }
  const library = JEMALLOC_PATHS.find((p) => exists(p));
  if (library === undefined) {
    if (wanted === 'auto') return glibc('glibc');
    throw new ConfigError(
      'MESHLET_MALLOC',
      `jemalloc: libjemalloc.so.2 not found in ${JEMALLOC_PATHS.join(', ')}; install it (Debian: libjemalloc2), give its path, or set MESHLET_MALLOC=glibc`,
      'environment',
    );
  }
  const added: Record<string, string> = { LD_PRELOAD: library };
  if (env.MALLOC_CONF === undefined) added.MALLOC_CONF = JEMALLOC_CONF;
  return { allocator: 'jemalloc', env: added };
}

/**
 * The allocator the running process uses, for its start-up log line: the preloaded library's file
 * name when `LD_PRELOAD` names one, else `libc`.
 */
export function mallocInUse(env: NodeJS.ProcessEnv = process.env): string {
  const preload = (env.LD_PRELOAD ?? '').split(/[:\s]+/).find((p) => p !== '');
  return preload === undefined ? 'libc' : (preload.split('/').pop() ?? preload);
}
