// Splits a process's RSS by mapping (/proc/PID/smaps) and groups the JS a daemon loaded by package, for bench/memory.ts.
import { readFileSync, readlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Where a resident page lives, by the mapping that holds it. */
export type Category = 'node' | 'libs' | 'heap' | 'arenas' | 'v8' | 'anon' | 'jit' | 'stacks' | 'other';

/** The rows of the split, in report order, each with what it means in plain words. */
export const CATEGORIES: readonly { key: Category; label: string; note: string }[] = [
  {
    key: 'node',
    label: 'node binary',
    note: "the `node` executable's pages (its code, read-only data and the builtins V8 maps beside its JIT code), plus its small writable data and .bss (~0.3 MiB). File-backed and clean, so shared with every other node process on the host and droppable by the kernel under pressure (it reads them back from disk); PSS divides them among the processes mapping them.",
  },
  {
    key: 'libs',
    label: 'other shared libraries',
    note: 'libc, libstdc++, libm, ld.so …: file-backed and shared like the node binary.',
  },
  {
    key: 'heap',
    label: '[heap] (main malloc arena)',
    note: "glibc malloc's main arena (brk): what C++ code (Node, V8's own bookkeeping, OpenSSL, llhttp, zlib) allocates on the main thread below the mmap threshold.",
  },
  {
    key: 'arenas',
    label: 'thread malloc arenas',
    note: "glibc's per-thread arenas (a 64 MiB-aligned reservation each, touched from the bottom): malloc from V8's worker threads (concurrent GC, compiler) and libuv's thread pool.",
  },
  {
    key: 'v8',
    label: 'V8 heap pages',
    note: 'anonymous readable mappings starting on a 256 KiB boundary: the pages of the JS heap (new, old, large-object, trusted and read-only spaces). Compare with V8\'s own "total physical size" below.',
  },
  {
    key: 'anon',
    label: 'other anonymous rw-p',
    note: 'the rest of the anonymous writable memory: malloc blocks of 128 KiB and more, which glibc maps on their own (meshlet sets `mmap_threshold` to 128 KiB), V8\'s pointer and dispatch tables, OpenSSL and ICU buffers. With "V8 heap pages" this is the "rest of the anonymous rw-p mappings".',
  },
  {
    key: 'jit',
    label: 'JIT code',
    note: "anonymous executable mappings: V8's code range (compiled JS, regexps, IC stubs).",
  },
  {
    key: 'stacks',
    label: 'stacks',
    note: "the main stack and the threads' stacks (8 MiB each reserved behind a guard page; only the touched pages count): V8 platform workers, libuv's pool, the inspector and signal threads.",
  },
  {
    key: 'other',
    label: 'other',
    note: 'vdso, io_uring rings (libuv), reservations without pages.',
  },
];

/** The /proc/PID/smaps_rollup fields the report shows, KiB. */
export const ROLLUP_FIELDS = [
  'Rss',
  'Pss',
  'Private_Dirty',
  'Anonymous',
  'Private_Clean',
  'Shared_Clean',
] as const;
export type RollupField = (typeof ROLLUP_FIELDS)[number];

/** One reading of a process's memory, KiB. */
export interface MemorySample {
  vmRss: number;
  rollup: Record<RollupField, number>;
  split: Record<Category, number>;
}

interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  path: string;
  rss: number;
}

const PAGE = 4096n;
const ARENA = 64n << 20n;
const V8_PAGE = 256n << 10n;

function parseSmaps(text: string): Mapping[] {
  const maps: Mapping[] = [];
  for (const line of text.split('\n')) {
    const h = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) [0-9a-f]+ \S+ \d+ *(.*)$/.exec(line);
    if (h !== null) {
      maps.push({ start: BigInt(`0x${h[1]}`), end: BigInt(`0x${h[2]}`), perms: h[3]!, path: h[4]!, rss: 0 });
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss !== null && maps.length > 0) maps[maps.length - 1]!.rss = Number(rss[1]);
  }
  return maps;
}

const isAnon = (m: Mapping): boolean => m.path === '' || m.path.startsWith('[anon:');
const size = (m: Mapping): bigint => m.end - m.start;

function classify(maps: readonly Mapping[], i: number, exe: string): Category {
  const m = maps[i]!;
  const prev = maps[i - 1];
  const next = maps[i + 1];
  if (m.path === exe) return 'node';
  if (m.path === '[heap]') return 'heap';
  if (m.path === '[stack]') return 'stacks';
  if (!isAnon(m)) return m.path.startsWith('/') && !m.path.startsWith('/memfd:') ? 'libs' : 'other';
  if (m.perms.includes('x')) return 'jit';
  if (m.perms.startsWith('rw')) {
    // glibc's thread arena: rw-p then ---p, 64 MiB together, 64 MiB-aligned.
    const reserved =
      next !== undefined && next.start === m.end && isAnon(next) && next.perms.startsWith('---')
        ? size(next)
        : 0n;
    if (m.start % ARENA === 0n && size(m) + reserved === ARENA) return 'arenas';
    // A thread stack sits right above its one-page PROT_NONE guard.
    if (prev?.end === m.start && isAnon(prev) && prev.perms.startsWith('---') && size(prev) === PAGE)
      return 'stacks';
    // .bss: anonymous, right after the file's own writable segment.
    if (prev?.end === m.start && !isAnon(prev) && prev.path.startsWith('/'))
      return prev.path === exe ? 'node' : 'libs';
  }
  if (m.perms.startsWith('r') && m.start % V8_PAGE === 0n) return 'v8';
  return m.perms.startsWith('rw') ? 'anon' : 'other';
}

/** VmRSS, smaps_rollup and the RSS split by mapping of a live process (KiB). */
export function sampleMemory(pid: number): MemorySample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollupText = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const exe = readlinkSync(`/proc/${pid}/exe`);
  const maps = parseSmaps(readFileSync(`/proc/${pid}/smaps`, 'utf8'));
  const split = Object.fromEntries(CATEGORIES.map((c) => [c.key, 0])) as Record<Category, number>;
  maps.forEach((m, i) => {
    split[classify(maps, i, exe)] += m.rss;
  });
  const field = (name: string): number =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(rollupText)?.[1]);
  const rollup = Object.fromEntries(ROLLUP_FIELDS.map((f) => [f, field(f)])) as Record<RollupField, number>;
  return { vmRss: Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]), rollup, split };
}

/** What bench/lib/heap-probe.js writes: V8's heap statistics and process.memoryUsage(). */
export interface HeapProbe {
  argv1: string | null;
  spaces: { space_name: string; space_size: number; space_used_size: number; physical_space_size: number }[];
  heap: Record<string, number>;
  code: Record<string, number>;
  usage: NodeJS.MemoryUsage;
}

/** What bench/lib/module-probe.js writes: every module an image loaded, bytes on disk. */
export interface ModuleProbe {
  argv1: string | null;
  modules: { url: string; bytes: number }[];
}

/** True for the daemon image of `meshlet run` (after the re-exec), not the CLI before it. */
export function isDaemonImage(argv1: string | null): boolean {
  return argv1 !== null && (argv1.endsWith('daemon-main.js') || argv1.includes('/dist/daemon/'));
}

/**
 * The npm package a path belongs to (the last `node_modules/` segment); `meshlet` under `root`;
 * else esbuild's own code (its runtime helpers, plugin namespaces).
 */
export function packageOf(path: string, root: string): string {
  const i = path.lastIndexOf('node_modules/');
  if (i !== -1) {
    const [a, b] = path.slice(i + 'node_modules/'.length).split('/');
    return a!.startsWith('@') ? `${a}/${b}` : a!;
  }
  return path.startsWith(`${root.replace(/\/$/, '')}/`) ? 'meshlet' : 'esbuild glue';
}

/** Per package: bytes of its code in a chunk, and how many of its modules. */
export type ChunkInputs = Map<string, { bytes: number; modules: number }>;

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** One source-map segment: base64 VLQ → numbers (relative, as the format stores them). */
function decodeVlq(segment: string): number[] {
  const out: number[] = [];
  let value = 0;
  let shift = 0;
  for (const ch of segment) {
    const digit = BASE64.indexOf(ch);
    value += (digit & 31) * 2 ** shift;
    if (digit & 32) shift += 5;
    else {
      out.push(value % 2 === 1 ? -(value - 1) / 2 : value / 2);
      value = 0;
      shift = 0;
    }
  }
  return out;
}

/**
 * Splits one bundle chunk by package from its source map (`FILE.map`, which the build writes):
 * every byte of generated code counts for the source its mapping segment names; the banner,
 * imports and exports esbuild writes around the modules map to none ("esbuild glue").
 * @returns null when the chunk has no source map.
 */
export function chunkSources(file: string, root: string): ChunkInputs | null {
  let map: { sources: string[]; sourceRoot?: string; mappings: string };
  try {
    map = JSON.parse(readFileSync(`${file}.map`, 'utf8')) as typeof map;
  } catch {
    return null;
  }
  const sources = map.sources.map((s) =>
    s.includes(':') && !s.startsWith('/') ? s : join(dirname(file), map.sourceRoot ?? '', s),
  );
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const bytes = new Map<number, number>(); // source index → bytes of generated code
  let src = 0;
  map.mappings.split(';').forEach((mapped, n) => {
    const line = lines[n] ?? '';
    let col = 0;
    let from = 0;
    let owner = -1;
    const flush = (to: number): void => {
      if (owner !== -1 && to > from)
        bytes.set(owner, (bytes.get(owner) ?? 0) + Buffer.byteLength(line.slice(from, to)));
      from = to;
    };
    for (const segment of mapped === '' ? [] : mapped.split(',')) {
      const v = decodeVlq(segment);
      col += v[0]!;
      flush(col);
      if (v.length >= 4) src += v[1]!;
      owner = v.length >= 4 ? src : -1;
    }
    flush(line.length);
  });
  // Whatever no segment names: banner, newlines, the sourceMappingURL comment.
  const mapped = [...bytes.values()].reduce((a, b) => a + b, 0);
  bytes.set(-1, Buffer.byteLength(text) - mapped);
  const out: ChunkInputs = new Map();
  for (const [i, b] of bytes) {
    if (b === 0) continue;
    const pkg = i === -1 ? 'esbuild glue' : packageOf(sources[i] ?? '', root);
    const row = out.get(pkg) ?? { bytes: 0, modules: 0 };
    row.bytes += b;
    if (pkg !== 'esbuild glue') row.modules += 1;
    out.set(pkg, row);
  }
  return out;
}

/** The JS a daemon image loaded, grouped by package. */
export interface ModuleBreakdown {
  /** package → source bytes and files (modules, for bundled code). */
  packages: Map<string, { bytes: number; modules: number }>;
  /** dist/daemon/ chunks loaded, with their size on disk; empty when the daemon ran unbundled. */
  chunks: { name: string; bytes: number }[];
  /** Loaded chunks without a source map, counted whole as "unknown". */
  unknownChunks: string[];
  builtins: number;
}

/**
 * Groups a module probe's list by package. A dist/daemon/ chunk is split by its source map
 * ({@link chunkSources}); any other file counts whole, for the package its path names.
 * @param root the package root (meshlet's own files are under it, outside node_modules).
 * @param skip file URLs to leave out (the probe itself).
 */
export function groupModules(probe: ModuleProbe, root: string, skip: readonly string[]): ModuleBreakdown {
  const out: ModuleBreakdown = { packages: new Map(), chunks: [], unknownChunks: [], builtins: 0 };
  const add = (pkg: string, bytes: number, modules: number): void => {
    const row = out.packages.get(pkg) ?? { bytes: 0, modules: 0 };
    row.bytes += bytes;
    row.modules += modules;
    out.packages.set(pkg, row);
  };
  for (const { url, bytes } of probe.modules) {
    if (skip.includes(url)) continue;
    if (!url.startsWith('file:')) {
      out.builtins += 1;
      continue;
    }
    const path = decodeURIComponent(new URL(url).pathname);
    if (!path.includes('/dist/daemon/')) {
      add(packageOf(path, root), bytes, 1);
      continue;
    }
    const name = basename(path);
    out.chunks.push({ name, bytes });
    const inputs = chunkSources(path, root);
    if (inputs === null) {
      out.unknownChunks.push(name);
      add('unknown (chunk without a source map)', bytes, 0);
    } else for (const [pkg, x] of inputs) add(pkg, x.bytes, x.modules);
  }
  return out;
}
