// `node bench/memory.ts`: where meshlet's memory goes (node binary, V8 heap, malloc, JS per package), idle and after load, written to bench/results/memory.md.
//
//   node bench/memory.ts [--out bench/results/memory.md] [--runs 3]
//
// Builds dist/ (`npm run build`), then per run, one process at a time: bare node, node with
// http/http2/tls loaded, meshlet with the plain config (static registry, one per-upstream port) and
// with the full one (Consul registry via test/consul-double, app health check, mTLS from the Connect
// CA). Each is read from /proc/PID 3 s after it serves (VmRSS, smaps_rollup, RSS split by mapping);
// the plain one again after a closed loop at 32 and then 128 connections, 10 s each. In separate
// runs (the probes cost memory themselves) bench/lib/heap-probe.js reports V8's heap by space and
// bench/lib/module-probe.js the JS files the daemon loaded (once). About 3 minutes for 3 runs.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { type ClosedLoopResult, closedLoop, closedLoopTool } from './lib/load.ts';
import {
  CATEGORIES,
  groupModules,
  type HeapProbe,
  isDaemonImage,
  type MemorySample,
  type ModuleBreakdown,
  type ModuleProbe,
  ROLLUP_FIELDS,
  sampleMemory,
} from './lib/memory-breakdown.ts';
import { asInImage, freePort, killAll, killAllNow, sleep, start, stop } from './lib/proc.ts';
import { median } from './lib/report.ts';
import {
  buildDist,
  issueCerts,
  startFullMeshlet,
  startMeshlet,
  startUpstream,
  type Target,
  useMeshletMain,
  waitReady,
} from './lib/targets.ts';

const USAGE = `usage: node bench/memory.ts [--out FILE] [--runs N]

Builds dist/ (npm run build) and measures where meshlet's memory goes, idle (plain and full config)
and after a closed loop, beside bare node; writes a markdown breakdown (about 1 minute per run).

  --out FILE   where to write it (default bench/results/memory.md)
  --runs N     runs to take medians over (default 3)
  -h, --help   print this and exit
`;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = (() => {
  try {
    return parseArgs({
      options: {
        out: { type: 'string', default: join(ROOT, 'bench', 'results', 'memory.md') },
        runs: { type: 'string', default: '3' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`memory: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
})();
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const RUNS = Number(values.runs);
/** What this host's environment had that meshlet's image has not (removed for every process measured). */
const NOT_IN_IMAGE = asInImage();
if (!(Number.isInteger(RUNS) && RUNS > 0)) {
  process.stderr.write(`memory: --runs needs a whole number above 0, got ${values.runs}\n\n${USAGE}`);
  process.exit(2);
}
/** How long the full config idles for its second reading, ms, with /metrics scraped every SCRAPE_MS meanwhile. */
const IDLE_LONG_MS = 60_000;
const SCRAPE_MS = 15_000;
/** Seconds to wait after a process serves before reading it. */
const SETTLE_MS = 3000;
const LOAD_S = 10;
const HEAP_PROBE = pathToFileURL(fileURLToPath(new URL('lib/heap-probe.js', import.meta.url))).href;
const MODULE_PROBE = pathToFileURL(fileURLToPath(new URL('lib/module-probe.js', import.meta.url))).href;

const tmp = mkdtempSync(join(os.tmpdir(), 'meshlet-memory-'));
async function shutdown(code: number): Promise<never> {
  await killAll();
  rmSync(tmp, { recursive: true, force: true });
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(130));
process.on('SIGTERM', () => void shutdown(143));
process.on('exit', killAllNow);
const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** The columns of the RSS table: what ran, and when it was read. */
const COLUMNS = {
  bare: 'bare node',
  libs: 'node + http, http2, tls',
  floor: 'Node floor of the full config',
  plain: 'meshlet, plain, idle',
  full: 'meshlet, full, idle',
  fullLater: 'full, idle 60 s, scraped',
  load32: 'plain, after -c32',
  load128: 'plain, after -c128',
  glibcIdle: 'plain on glibc malloc, idle',
  glibc32: 'glibc malloc, after -c32',
  glibc128: 'glibc malloc, after -c128',
} as const;
type Column = keyof typeof COLUMNS;
type LoadColumn = 'load32' | 'load128' | 'glibc32' | 'glibc128';
/** The plain meshlet's runs: its default allocator, then glibc's (MESHLET_MALLOC=glibc); idle, then after each load. */
const PLAIN_RUNS = [
  {
    idle: 'plain',
    env: {},
    loads: [
      ['load32', 32],
      ['load128', 128],
    ],
  },
  {
    idle: 'glibcIdle',
    env: { MESHLET_MALLOC: 'glibc' },
    loads: [
      ['glibc32', 32],
      ['glibc128', 128],
    ],
  },
] as const satisfies readonly {
  idle: Column;
  env: NodeJS.ProcessEnv;
  loads: readonly (readonly [LoadColumn, number])[];
}[];
/** What gets the heap probe: the three plain-Node baselines and the two meshlet configs, in column order. */
const PROBED = ['bare', 'libs', 'floor', 'plain', 'full'] as const;
type Probed = (typeof PROBED)[number];
type Baseline = Exclude<Probed, 'plain' | 'full'>;
/**
 * Where the floor's mTLS server finds `web.pem`, `web-key.pem` and `ca.pem` (issued by `meshlet
 * certs` at start): the `FLOOR_CERTS` environment variable of the baseline process.
 */
const FLOOR_CERTS = join(tmp, 'certs');
const BASELINE_CODE: Record<Baseline, string> = {
  bare: 'setTimeout(()=>{},1e6)',
  libs: "require('node:http'); require('node:http2'); require('node:tls'); setTimeout(()=>{},1e6)",
  // What the full config makes Node load and hold before any of meshlet's own JS runs.
  floor:
    "const fs = require('node:fs'), d = process.env.FLOOR_CERTS; require('node:dns'); require('node:worker_threads'); require('node:v8').getHeapStatistics(); require('node:perf_hooks').monitorEventLoopDelay().enable(); require('node:http').createServer(() => {}).listen(0, '127.0.0.1'); require('node:tls').createServer({ key: fs.readFileSync(d + '/web-key.pem'), cert: fs.readFileSync(d + '/web.pem'), ca: fs.readFileSync(d + '/ca.pem'), requestCert: true }).listen(0, '127.0.0.1'); setTimeout(() => {}, 1e6)",
};

/** A running process to read, and everything to stop with it. */
interface Running {
  pid: number;
  stopAll: () => Promise<void>;
  target?: Target;
}

/** Starts one of the four processes, waits until it serves and SETTLE_MS more. */
async function launch(kind: Probed, upstreamPort: number, env: NodeJS.ProcessEnv = {}): Promise<Running> {
  // The default allocator (jemalloc when installed, README "Memory and GC") unless `env` picks one.
  env = { MESHLET_MALLOC: 'auto', ...env };
  if (kind !== 'plain' && kind !== 'full') {
    const child = start(process.execPath, ['-e', BASELINE_CODE[kind]], {
      env: { ...process.env, FLOOR_CERTS, ...env },
    });
    await sleep(SETTLE_MS);
    return { pid: child.pid!, stopAll: () => stop(child) };
  }
  const common = { key: kind, label: kind, dir: tmp, adminGrpcPort: await freePort(), env };
  let target: Target;
  let helpers: ChildProcess[] = [];
  if (kind === 'plain') {
    target = await startMeshlet({ ...common, accessLog: false, upstreamPort });
    await waitReady(target);
  } else ({ target, helpers } = await startFullMeshlet(common));
  await sleep(SETTLE_MS);
  return {
    pid: target.pid!,
    target,
    stopAll: async () => {
      for (const c of [target.child!, ...helpers]) await stop(c);
    },
  };
}

/** Waits `ms`, fetching the target's /metrics every SCRAPE_MS (the first one right away). */
async function idleScraped(t: Target, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const res = await fetch(`http://127.0.0.1:${t.adminPort}/metrics`);
    if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
    await res.text();
    await sleep(Math.min(SCRAPE_MS, end - Date.now()));
  }
}

/** Sends SIGUSR2 to a probed process and returns the JSON line its probe wrote (the daemon's, for meshlet). */
async function readProbe<T extends { argv1: string | null }>(
  pid: number,
  file: string,
  meshlet: boolean,
): Promise<T> {
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 5000;
  for (;;) {
    await sleep(100);
    const lines = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : [];
    const found = lines
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as T];
        } catch {
          return []; // still being written
        }
      })
      .filter((x) => !meshlet || isDaemonImage(x.argv1));
    if (found.length > 0) return found[found.length - 1]!;
    if (Date.now() > deadline) throw new Error(`no probe output from pid ${pid} in ${file}`);
  }
}

/** Runs `kind` with a probe loaded through NODE_OPTIONS (it reaches the daemon across meshlet's re-exec). */
async function probed<T extends { argv1: string | null }>(
  kind: Probed,
  probe: string,
  upstreamPort: number,
  tag: string,
): Promise<T> {
  const file = join(tmp, `${kind}-${tag}.jsonl`);
  const env = {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${probe}`.trim(),
    MESHLET_PROBE_FILE: file,
  };
  const p = await launch(kind, upstreamPort, env);
  try {
    return await readProbe<T>(p.pid, file, kind === 'plain' || kind === 'full');
  } finally {
    await p.stopAll();
  }
}

function commitLine(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', 'src', 'scripts'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    return `${commit}${dirty.trim() === '' ? '' : ' (src/ or scripts/ with uncommitted changes)'}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

async function main(): Promise<void> {
  const date = new Date().toISOString();
  const loadStart = os.loadavg().map((l) => l.toFixed(2));
  const buildNote = buildDist(ROOT);
  useMeshletMain(join(ROOT, 'dist', 'cli', 'main.js'));
  // The floor's mTLS server certificate.
  issueCerts(FLOOR_CERTS, ['web']);
  const bundled = existsSync(join(ROOT, 'dist', 'daemon', 'daemon-main.js'));
  const { target: upstream, kind: upstreamKind } = await startUpstream(tmp);
  log(`upstream: ${upstreamKind} on 127.0.0.1:${upstream.port}; ${RUNS} run(s)`);

  const samples = Object.fromEntries(Object.keys(COLUMNS).map((c) => [c, []])) as unknown as Record<
    Column,
    MemorySample[]
  >;
  const heaps = Object.fromEntries(PROBED.map((k) => [k, []])) as unknown as Record<Probed, HeapProbe[]>;
  const loads: Record<LoadColumn, ClosedLoopResult[]> = {
    load32: [],
    load128: [],
    glibc32: [],
    glibc128: [],
  };
  const modules: Partial<Record<'plain' | 'full', ModuleBreakdown>> = {};
  const say = (col: Column, s: MemorySample): void =>
    log(
      `  ${COLUMNS[col].padEnd(24)} VmRSS ${(s.vmRss / 1024).toFixed(1)} MiB, PSS ${(s.rollup.Pss / 1024).toFixed(1)} MiB`,
    );

  for (let run = 1; run <= RUNS; run++) {
    log(`run ${run}/${RUNS}`);
    for (const kind of ['bare', 'libs', 'floor', 'full'] as const) {
      const p = await launch(kind, upstream.port);
      try {
        samples[kind].push(sampleMemory(p.pid));
        say(kind, samples[kind].at(-1)!);
        if (kind === 'full') {
          // Idle as a deployed sidecar idles: its app health check and Consul's watch run, and
          // Prometheus scrapes it; V8 may compile what those timers run by then.
          await idleScraped(p.target!, IDLE_LONG_MS - SETTLE_MS);
          samples.fullLater.push(sampleMemory(p.pid));
          say('fullLater', samples.fullLater.at(-1)!);
        }
      } finally {
        await p.stopAll();
      }
    }
    for (const plain of PLAIN_RUNS) {
      const p = await launch('plain', upstream.port, plain.env);
      try {
        samples[plain.idle].push(sampleMemory(p.pid));
        say(plain.idle, samples[plain.idle].at(-1)!);
        for (const [col, connections] of plain.loads) {
          const r = await closedLoop(p.target!.port, { connections, durationS: LOAD_S });
          if (r.errors > 0 || !(r.requests > 0))
            throw new Error(`plain meshlet fails under load: ${JSON.stringify(r)}`);
          loads[col].push(r);
          samples[col].push(sampleMemory(p.pid));
          say(col, samples[col].at(-1)!);
        }
      } finally {
        await p.stopAll();
      }
    }
    for (const kind of PROBED) {
      heaps[kind].push(await probed<HeapProbe>(kind, HEAP_PROBE, upstream.port, `heap-${run}`));
      log(
        `  heap probe ${kind}: V8 physical ${(heaps[kind].at(-1)!.heap.total_physical_size! / 1024 ** 2).toFixed(1)} MiB`,
      );
    }
    if (run === 1) {
      for (const kind of ['plain', 'full'] as const) {
        const probe = await probed<ModuleProbe>(kind, MODULE_PROBE, upstream.port, 'modules');
        modules[kind] = groupModules(probe, ROOT, [MODULE_PROBE]);
        log(`  module probe ${kind}: ${probe.modules.length} modules (daemon image ${probe.argv1})`);
      }
    }
  }

  const configs = Object.fromEntries(
    (['plain', 'full'] as const).map((k) => [
      k,
      readFileSync(join(tmp, `${k}.yaml`), 'utf8')
        .replace(/port: \d+/g, 'port: PORT')
        .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT')
        .trim(),
    ]),
  ) as Record<'plain' | 'full', string>;
  const md = render({
    date,
    loadStart,
    loadEnd: os.loadavg().map((l) => l.toFixed(2)),
    upstreamKind,
    bundled,
    buildNote,
    samples,
    heaps,
    loads,
    modules,
    configs,
  });
  const out = values.out;
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, md);
  process.stdout.write(md);
  log(`written: ${relative(process.cwd(), out) || out}`);
}

interface Measured {
  date: string;
  loadStart: string[];
  loadEnd: string[];
  upstreamKind: string;
  bundled: boolean;
  buildNote: string | null;
  samples: Record<Column, MemorySample[]>;
  heaps: Record<Probed, HeapProbe[]>;
  loads: Record<LoadColumn, ClosedLoopResult[]>;
  modules: Partial<Record<'plain' | 'full', ModuleBreakdown>>;
  configs: Record<'plain' | 'full', string>;
}

/** MiB, one decimal, of a median over runs; with more than one run, the spread (min–max) too. */
function cell(kib: readonly number[]): string {
  if (kib.length === 0) return '–';
  const m = (x: number): string => (x / 1024).toFixed(1);
  const lo = Math.min(...kib);
  const hi = Math.max(...kib);
  return kib.length === 1 ? m(kib[0]!) : `${m(median(kib))} (${m(lo)}–${m(hi)})`;
}

function render(x: Measured): string {
  const L: string[] = [];
  const cols = Object.keys(COLUMNS) as Column[];
  const cpus = os.cpus();
  L.push('# meshlet memory breakdown', '');
  L.push(
    'Re-create: `node bench/memory.ts` (about 1 minute per run; `--runs N`, default 3; `--out FILE`). It builds dist/ first (`npm run build`: tsc and the daemon bundle) and measures what it built.',
    '',
  );
  L.push(
    `Machine: ${cpus.length} cores, ${cpus[0]?.model ?? 'unknown'}, ${Math.round(os.totalmem() / 1024 ** 3)} GiB, ${os.type()} ${os.release()}; Node ${process.version}; meshlet ${commitLine()}; ${x.date}; load average ${x.loadStart.join(' ')} at start, ${x.loadEnd.join(' ')} at end.${NOT_IN_IMAGE.length === 0 ? '' : ` Every process runs without ${NOT_IN_IMAGE.map((n) => `\`${n}\``).join(', ')}, which this host sets and meshlet's image does not (~0.8 MiB of RSS per Node process for Debian's CA bundle).`} ${RUNS === 1 ? '1 run (so no spread; `--runs 3` for medians)' : `${RUNS} runs: medians, with the spread (min–max) over runs`}.`,
    '',
  );
  L.push('## What runs');
  L.push('');
  L.push(`- **bare node**: \`node -e '${BASELINE_CODE.bare}'\`.`);
  L.push(
    `- **node + http, http2, tls**: \`node -e "${BASELINE_CODE.libs}"\`: what Node itself costs a proxy.`,
  );
  L.push(
    `- **Node floor of the full config**: \`node -e "${BASELINE_CODE.floor}"\` (FLOOR_CERTS: a key, certificate and CA issued by \`meshlet certs\`). What the full config makes Node load and hold before any of meshlet's own code: an HTTP server and an mTLS server listening (a listening server also loads Node's cluster module, and with it child_process and dgram) and the built-ins meshlet uses for DNS discovery, pino's transports (worker_threads), the heap and event-loop metrics. Plain Node, glibc malloc. The idle-RSS line of issue 18 (≤ 60 MiB) sits at or below this.`,
  );
  L.push(
    `- **meshlet, plain**: \`node dist/cli/main.js run --config plain.yaml\`, which re-executes itself (same PID) into the daemon${x.bundled ? ' bundle, dist/daemon/daemon-main.js' : ', dist/cli/daemon-main.js (no bundle)'}, with \`--max-semi-space-size=2\` and its default allocator (jemalloc preloaded when the host has it, else glibc malloc with meshlet's tunables; README "Memory and GC"); a static registry and one per-upstream listener:`,
  );
  L.push('', '  ```yaml', ...x.configs.plain.split('\n').map((l) => `  ${l}`), '  ```', '');
  L.push(
    "- **meshlet, full** (the issue's idle-RSS config): the same with a Consul registry (test/consul-double, a faithful fake agent with the Connect CA endpoints), an HTTP health check of a local app (bench/servers/node-upstream.ts), the mTLS inbound listener with its certificate from the Connect CA, and no drain delay on SIGTERM:",
  );
  L.push('', '  ```yaml', ...x.configs.full.split('\n').map((l) => `  ${l}`), '  ```', '');
  const rps = (rs: ClosedLoopResult[]): string =>
    `${(median(rs.map((r) => r.rps)) / 1000).toFixed(1)}k req/s`;
  L.push(
    `- **after load**: the plain meshlet right after a closed loop through its per-upstream port (${closedLoopTool}, 1 thread, 32 connections, ${LOAD_S} s: ${rps(x.loads.load32)}), then right after another at 128 connections (${LOAD_S} s: ${rps(x.loads.load128)}). Upstream: ${x.upstreamKind}.`,
  );
  L.push(
    `- **plain on glibc malloc**: the plain meshlet with \`MESHLET_MALLOC=glibc\` (glibc's malloc with meshlet's \`GLIBC_TUNABLES\`), idle, then after the same two loads (${rps(x.loads.glibc32)}, ${rps(x.loads.glibc128)}).`,
  );
  L.push(
    `- **full, idle ${IDLE_LONG_MS / 1000} s, scraped**: the full meshlet read again ${IDLE_LONG_MS / 1000} s after it serves, having answered a \`GET /metrics\` every ${SCRAPE_MS / 1000} s meanwhile (as Prometheus would) while its app health check (every 5 s) and Consul watch ran: the idle figure a deployed sidecar shows.`,
  );
  L.push(
    `- Every process runs alone (one at a time) and is read ${SETTLE_MS / 1000} s after it serves (meshlet: \`GET /ready\` answers 200). meshlet gets its own gRPC admin port, as a lone meshlet on a host would have 15002.`,
  );
  L.push('');
  L.push('## RSS by mapping, MiB');
  L.push('');
  L.push(
    'From /proc/PID/status (VmRSS), /proc/PID/smaps_rollup and, for the split, /proc/PID/smaps. The split rows add up to Rss.',
  );
  L.push('');
  L.push(`| | ${cols.map((c) => COLUMNS[c]).join(' | ')} |`);
  L.push(`| --- | ${cols.map(() => '---:').join(' | ')} |`);
  const row = (name: string, pick: (s: MemorySample) => number): void => {
    L.push(`| ${name} | ${cols.map((c) => cell(x.samples[c].map(pick))).join(' | ')} |`);
  };
  row('**VmRSS**', (s) => s.vmRss);
  for (const f of ROLLUP_FIELDS) row(`${f}`, (s) => s.rollup[f]);
  for (const c of CATEGORIES) row(`↳ ${c.label}`, (s) => s.split[c.key]);
  L.push('');
  L.push('### What the rows mean');
  L.push('');
  L.push(
    '- **Rss**: every resident page the process maps, its share or not. **Pss**: shared pages divided by the number of processes mapping them (so other node processes on the host, such as the Consul double and the upstream here, lower it). **Private_Dirty**: pages only this process has written: what it really costs the host. **Anonymous**: pages backed by no file (heaps, stacks). **Private_Clean / Shared_Clean**: file pages read but not written, mapped by this process alone / by others too.',
  );
  for (const c of CATEGORIES) L.push(`- **${c.label}**: ${c.note}`);
  L.push('');

  L.push('## V8 heap, MiB');
  L.push('');
  L.push(
    'From separate runs with bench/lib/heap-probe.js loaded through `NODE_OPTIONS=--import` (it reaches the daemon across the re-exec), read on SIGUSR2 as long after start as the RSS readings; the probe costs a little memory itself, hence the separate runs. Per space: resident (physical) / used, medians.',
  );
  L.push('');
  L.push(`| | ${PROBED.map((c) => COLUMNS[c]).join(' | ')} |`);
  L.push(`| --- | ${PROBED.map(() => '---:').join(' | ')} |`);
  const spaces = [
    ...new Set(PROBED.flatMap((c) => x.heaps[c].flatMap((h) => h.spaces.map((s) => s.space_name)))),
  ];
  for (const name of spaces) {
    const per = PROBED.map((c) => {
      const ss = x.heaps[c]
        .map((h) => h.spaces.find((s) => s.space_name === name))
        .filter((s) => s !== undefined);
      return {
        phys: median(ss.map((s) => s.physical_space_size)),
        used: median(ss.map((s) => s.space_used_size)),
      };
    });
    if (per.every((p) => !(p.phys > 0))) continue;
    const f = (b: number): string => (Number.isFinite(b) ? (b / 1024 ** 2).toFixed(1) : '–');
    L.push(`| ${name.replace(/_/g, ' ')} | ${per.map((p) => `${f(p.phys)} / ${f(p.used)}`).join(' | ')} |`);
  }
  const hrow = (name: string, pick: (h: HeapProbe) => number | undefined): void => {
    L.push(
      `| ${name} | ${PROBED.map((c) => cell(x.heaps[c].map((h) => (pick(h) ?? Number.NaN) / 1024).filter(Number.isFinite))).join(' | ')} |`,
    );
  };
  hrow('**total physical (resident) size**', (h) => h.heap.total_physical_size);
  hrow('total used size', (h) => h.heap.used_heap_size);
  hrow('V8 malloced memory', (h) => h.heap.malloced_memory);
  hrow('external memory (Buffers, ArrayBuffers … outside the heap)', (h) => h.heap.external_memory);
  hrow('↳ of which ArrayBuffers (process.memoryUsage)', (h) => h.usage.arrayBuffers);
  hrow('code and metadata', (h) => h.code.code_and_metadata_size);
  hrow('bytecode and metadata', (h) => h.code.bytecode_and_metadata_size);
  hrow('external script source', (h) => h.code.external_script_source_size);
  hrow('RSS of the probe run (process.memoryUsage)', (h) => h.usage.rss);
  L.push(
    `| for comparison: V8 heap pages + JIT code from smaps, RSS runs | ${PROBED.map((c) => cell(x.samples[c].map((s) => s.split.v8 + s.split.jit))).join(' | ')} |`,
  );
  L.push('');
  L.push(
    '"Code and metadata" and "bytecode and metadata" live inside the heap spaces above (code space, trusted space, old space); "external script source" is the JS source text V8 keeps for lazy compilation, outside the heap, in malloc. "External memory" is what Node tells V8 it holds outside the heap (Buffer and ArrayBuffer backing stores, mostly malloc).',
  );
  L.push('');

  L.push('## JS the daemon loads, by package');
  L.push('');
  L.push(
    `From one run per config with bench/lib/module-probe.js (\`module.registerHooks({ load })\`), counting the daemon image only (argv[1] ${x.bundled ? 'dist/daemon/daemon-main.js' : 'dist/cli/daemon-main.js'}, after the re-exec), not the CLI before it.${
      x.bundled
        ? ' The daemon runs from the bundle (dist/daemon/), so it loads chunks, not files: each loaded chunk is split by package with the source map the build writes beside it (every byte of generated code counts for the source file its mapping names; what names none, such as the banner and the imports and exports between chunks, is "esbuild glue"); "modules" counts the source files with code in the loaded chunks. Bytes are JS as bundled (whitespace removed, TypeScript types stripped).'
        : " Bytes are the files' size on disk."
    } Packages outside the bundle (loaded from node_modules when first used) count as files.`,
  );
  L.push('');
  const mods = (['plain', 'full'] as const).filter((k) => x.modules[k] !== undefined);
  const pkgs = [...new Set(mods.flatMap((k) => [...x.modules[k]!.packages.keys()]))];
  const bytesOf = (k: 'plain' | 'full', p: string): number => x.modules[k]?.packages.get(p)?.bytes ?? 0;
  pkgs.sort((a, b) => bytesOf('full', b) - bytesOf('full', a) || bytesOf('plain', b) - bytesOf('plain', a));
  L.push(`| package | ${mods.map((k) => `${k}: KiB | ${k}: modules`).join(' | ')} |`);
  L.push(`| --- | ${mods.map(() => '---: | ---:').join(' | ')} |`);
  const kib = (b: number): string => (b / 1024).toFixed(1);
  for (const p of pkgs)
    L.push(
      `| ${p} | ${mods
        .map((k) => {
          const r = x.modules[k]!.packages.get(p);
          return r === undefined ? '– | –' : `${kib(r.bytes)} | ${r.modules}`;
        })
        .join(' | ')} |`,
    );
  const total = (k: 'plain' | 'full'): { bytes: number; modules: number } =>
    [...x.modules[k]!.packages.values()].reduce(
      (a, r) => ({ bytes: a.bytes + r.bytes, modules: a.modules + r.modules }),
      {
        bytes: 0,
        modules: 0,
      },
    );
  L.push(`| **total** | ${mods.map((k) => `${kib(total(k).bytes)} | ${total(k).modules}`).join(' | ')} |`);
  L.push('');
  for (const k of mods) {
    const m = x.modules[k]!;
    const chunks = [...m.chunks]
      .sort((p, q) => q.bytes - p.bytes)
      .map((c) => `${c.name} (${kib(c.bytes)})`)
      .join(', ');
    L.push(
      `- ${k}: ${m.builtins} Node built-in modules${m.chunks.length > 0 ? `; ${m.chunks.length} bundle chunks, KiB: ${chunks}` : ''}.${
        m.unknownChunks.length > 0
          ? ` **${m.unknownChunks.length} loaded chunk(s) had no source map** (counted whole as "unknown"): ${m.unknownChunks.join(', ')}.`
          : ''
      }`,
    );
  }
  L.push('');
  L.push('## Notes');
  L.push('');
  L.push(
    '- A Node process\'s RSS is mostly not its JS: compare "bare node" with meshlet. The node binary\'s clean pages are a third or more of every column, and on a host running several node processes the kernel keeps one copy (see Pss).',
  );
  L.push(
    "- The baselines run without meshlet's `--max-semi-space-size=2` and allocator choice, with Node's defaults (glibc malloc, untuned).",
  );
  L.push(
    '- Under jemalloc its memory is anonymous mappings like V8\'s: the split puts it in "V8 heap pages" (its extents start on 256 KiB boundaries too) and "other anonymous rw-p", and "[heap]" and "thread malloc arenas" hold only what was allocated before it was loaded. Compare totals (VmRSS, Anonymous) between the jemalloc and glibc columns; V8\'s own figures are in the next table.',
  );
  L.push(
    "- Other processes of this machine (the Consul double, the upstream, other engineers' runs) share the node binary and libraries: they change Pss and Shared_Clean. They can change Rss too: on a page fault in a file mapping the kernel also maps the neighbouring pages already in the page cache (fault-around, 64 KiB), so how much of the node binary is resident depends partly on what other node processes have read. In trial runs its row moved by up to 6 MiB from one run to the next (most likely for that reason), so read Private_Dirty and Anonymous for meshlet's own memory.",
  );
  if (x.buildNote !== null) L.push(`- ${x.buildNote}`);
  L.push('');
  return L.join('\n');
}

try {
  await main();
  await shutdown(0);
} catch (err) {
  log(`memory failed: ${(err as Error).stack ?? String(err)}`);
  await shutdown(1);
}
