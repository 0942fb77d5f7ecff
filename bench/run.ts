// `npm run bench`: meshlet against direct, node-http-proxy, HAProxy and nginx on this machine, in one run.
//
// Phases (see bench/README.md): closed loop (wrk -t1 -c32, interleaved over rounds), fixed rate
// (2,000 req/s, open loop) for added latency, 1 MiB responses, two meshlet hops, gRPC (grpc.ts:
// unary calls/s, unary latency at 1,000 calls/s, one bidi stream), micro-benchmarks.
// Everything listens on 127.0.0.1; every load is bounded; every child is killed at the end or on
// SIGINT/SIGTERM.
//
//   npm run bench [-- --quick] [-- --no-micro] [-- --no-grpc] [-- --profile] [-- --ref COMMIT]
//                 [-- --long-rate] [-- --rate-rounds N] [-- --rate-seconds S] [-- --help]
//
// --ref runs meshlet from `git archive COMMIT src` instead of the working tree (which may be
// mid-edit); the micro-benchmarks always use the working tree.
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { selfByArea, topSelfFrames } from './cpu-profile.ts';
import {
  type ClosedLoopResult,
  closedLoop,
  closedLoopTool,
  type FixedRateResult,
  fixedRate,
} from './lib/load.ts';
import {
  cpuSeconds,
  killAll,
  killAllNow,
  rssMiB,
  runBounded,
  sleep,
  stop,
  versionOf,
  which,
} from './lib/proc.ts';
import {
  type BenchResults,
  type FixedSummary,
  median,
  renderMarkdown,
  summarise,
  updateReadme,
} from './lib/report.ts';
import {
  buildDist,
  HAPROXY,
  NGINX,
  startFullMeshlet,
  startHaproxy,
  startHttpProxy,
  startUndiciProxy,
  startMeshlet,
  startNginxProxy,
  startUpstream,
  issueCerts,
  type Target,
  useMeshletMain,
} from './lib/targets.ts';
import { aloneWith, asInImage, freePort, pinProcess } from './lib/proc.ts';
import { runGrpcPhase } from './grpc.ts';
import { runGatewayPhase } from './gateway.ts';
import { DEFAULT_SEMI_SPACE_MB } from '../src/cli/gc-tuning.ts';
import { chooseMalloc } from '../src/cli/malloc-choice.ts';

/** What `--help` prints, and what a bad flag prints after its reason: every flag parseArgs accepts. */
const USAGE = `usage: npm run bench [-- FLAGS...]   (or: node bench/run.ts [FLAGS...])

Runs meshlet against direct, node-http-proxy, HAProxy and nginx, over HTTP and gRPC, on this machine (about 13 minutes);
writes bench/results/DATE.{json,md} and, unless --quick, results/latest.md and bench/README.md's table.

  --quick            smoke run: 3 s per load, 1 round (results named *-quick, not kept in git)
  --no-micro         skip the micro-benchmarks
  --no-grpc          skip the gRPC phase (about 3.5 minutes; 40 s with --quick)
  --no-gateway       skip the gateway phase: JWT vs no auth vs nginx as an edge proxy (about 1.5 minutes; 20 s with --quick)
  --profile          meshlet alone under the closed loop with --cpu-prof; top frames to bench/results/profile.md
  --ref COMMIT       run meshlet from \`git archive COMMIT src\` instead of the working tree (daemon not bundled)
  --long-rate        fixed-rate phase in 10 rounds of 10 s, the issue's longer rounds (adds about 9 minutes);
                     default 5 rounds of 6 s (1 of 3 s with --quick)
  --rate-rounds N    fixed-rate rounds (overrides the default and --long-rate)
  --rate-seconds S   seconds per target in each fixed-rate round (overrides the default and --long-rate)
  -h, --help         print this and exit
`;

function parseFlags() {
  try {
    return parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        'no-micro': { type: 'boolean', default: false },
        'no-grpc': { type: 'boolean', default: false },
        'no-gateway': { type: 'boolean', default: false },
        profile: { type: 'boolean', default: false },
        ref: { type: 'string' },
        'long-rate': { type: 'boolean', default: false },
        'rate-rounds': { type: 'string' },
        'rate-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    // Unknown flag, missing value, stray argument: the reason and the usage, exit 2, no stack.
    process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}
const values = parseFlags();
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const quick = values.quick;
const plan = quick
  ? { durationS: 3, rounds: 1, rateRounds: 1, warmS: 1, rateS: 3, largeS: 3, hopS: 3 }
  : // Five fixed-rate rounds: a p99 over 12,000 requests swings by several ms between rounds (one
    // runtime stall of 10-30 ms decides it), so the median needs more rounds than the req/s does.
    { durationS: 10, rounds: 3, rateRounds: 5, warmS: 2, rateS: 6, largeS: 8, hopS: 10 };
// --long-rate: the issue's longer rounds (10 × 10 s, 20,000 requests each), so one stall does not
// decide a round's p99; --rate-rounds and --rate-seconds set either figure on their own.
if (values['long-rate']) Object.assign(plan, { rateRounds: 10, rateS: 10 });
/** A flag's value as a number above zero (whole when `integer`), else usage and exit 2. */
function positive(flag: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (n > 0 && (!integer || Number.isInteger(n))) return n;
  process.stderr.write(
    `bench: --${flag} needs a ${integer ? 'whole ' : ''}number above 0, got ${value}\n\n${USAGE}`,
  );
  process.exit(2);
}
plan.rateRounds = positive('rate-rounds', values['rate-rounds'], true) ?? plan.rateRounds;
plan.rateS = positive('rate-seconds', values['rate-seconds'], false) ?? plan.rateS;
const CONNECTIONS = 32;
/** The many-connections closed loop: where a too-small young generation shows (semi-space table). */
const MANY_CONNECTIONS = 128;
const RATE = 2000;

const benchDir = fileURLToPath(new URL('.', import.meta.url));
const resultsDir = join(benchDir, 'results');
const tmp = mkdtempSync(join(os.tmpdir(), 'meshlet-bench-'));

let stopping = false;
async function shutdown(code: number): Promise<never> {
  stopping = true;
  await killAll();
  rmSync(tmp, { recursive: true, force: true });
  process.exit(code);
}
process.on('SIGINT', () => {
  process.stderr.write('\ninterrupted: stopping every child process\n');
  void shutdown(130);
});
process.on('SIGTERM', () => void shutdown(143));
process.on('exit', killAllNow);

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Load average at the start of each phase, to judge how noisy the machine was. */
const phaseLoad: string[] = [];
function phase(name: string, line: string): void {
  phaseLoad.push(`${name} ${os.loadavg()[0]!.toFixed(2)}`);
  log(line);
}

function fmtLoad(r: ClosedLoopResult): string {
  return `${Math.round(r.rps)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms${r.errors > 0 ? `, ${r.errors} errors` : ''}`;
}

function machineInfo(): BenchResults['machine'] {
  const cpus = os.cpus();
  let commit = 'unknown';
  let dirty = false;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    dirty = execFileSync('git', ['status', '--porcelain', 'src'], { encoding: 'utf8' }).trim() !== '';
  } catch {
    // not a git checkout
  }
  const pkg = (name: string): string | null => {
    try {
      const p = new URL(`../node_modules/${name}/package.json`, import.meta.url);
      return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
    } catch {
      return null;
    }
  };
  const wrk = which('wrk');
  const H2LOAD = which('h2load');
  return {
    date: new Date().toISOString(),
    cores: cpus.length,
    cpu: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    tools: {
      wrk: wrk === null ? null : versionOf(wrk, ['-v']),
      h2load: H2LOAD === null ? null : versionOf(H2LOAD, ['--version']),
      haproxy: HAPROXY === null ? null : versionOf(HAPROXY, ['-v']),
      nginx: NGINX === null ? null : versionOf(NGINX, ['-v']),
      autocannon: pkg('autocannon'),
      'http-proxy': pkg('http-proxy'),
      tinybench: pkg('tinybench'),
      '@grpc/grpc-js': pkg('@grpc/grpc-js'),
      undici: pkg('undici'),
    },
    commit: `${commit}${dirty ? ' (src/ has uncommitted changes)' : ''}`,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** `--ref`: extracts `src/` of a commit into the temp dir and runs meshlet from there. */
function checkoutRef(ref: string): string {
  const tree = join(tmp, 'tree');
  mkdirSync(tree, { recursive: true });
  const archive = execFileSync('git', ['archive', '--format=tar', ref, 'src', 'package.json'], {
    maxBuffer: 256 * 1024 * 1024,
  });
  execFileSync('tar', ['-x', '-C', tree], { input: archive });
  symlinkSync(fileURLToPath(new URL('../node_modules', import.meta.url)), join(tree, 'node_modules'));
  buildNote = buildDist(tree);
  useMeshletMain(join(tree, 'dist', 'cli', 'main.js'));
  return execFileSync('git', ['rev-parse', '--short', ref], { encoding: 'utf8' }).trim();
}

/** What {@link buildDist} had to say (no daemon bundle), for the report's notes. */
let buildNote: string | null = null;

async function main(): Promise<void> {
  const machine = machineInfo();
  if (values.ref !== undefined) machine.commit = `${checkoutRef(values.ref)} (--ref ${values.ref})`;
  else {
    buildNote = buildDist(fileURLToPath(new URL('..', import.meta.url)));
    useMeshletMain(fileURLToPath(new URL('../dist/cli/main.js', import.meta.url)));
  }
  const notes: string[] = buildNote === null ? [] : [buildNote];
  const notInImage = asInImage();
  if (notInImage.length > 0)
    notes.push(
      `every process runs without ${notInImage.join(', ')}, which this host sets and meshlet's image does not (~0.8 MiB of RSS per Node process)`,
    );
  const skipped: { target: string; reason: string }[] = [];
  log(
    `meshlet bench${quick ? ' (--quick)' : ''}: ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}`,
  );
  log(`closed-loop tool: ${closedLoopTool}${closedLoopTool === 'autocannon' ? ' (wrk not installed)' : ''}`);

  const { target: direct, kind: upstreamKind } = await startUpstream(tmp);
  log(`upstream: ${upstreamKind} on 127.0.0.1:${direct.port}`);
  const up = direct.port;
  const meshlet = await startMeshlet({
    key: 'meshlet',
    label: `meshlet, defaults (semi-space ${DEFAULT_SEMI_SPACE_MB} MiB, ${chooseMalloc({}).allocator === 'jemalloc' ? 'jemalloc' : 'glibc malloc'}, access log off)`,
    accessLog: false,
    upstreamPort: up,
    dir: tmp,
  });
  if (values.profile) {
    await profile(up);
    return;
  }
  const meshletLog = await startMeshlet({
    key: 'meshlet-log',
    label: 'meshlet, access log on (to a file)',
    accessLog: true,
    upstreamPort: up,
    dir: tmp,
  });
  // V8's optimizing compilers on the main thread (MESHLET_MAIN_THREAD_JIT=1), against the worker
  // threads meshlet keeps by default: the JIT choice's cost in req/s, tail and RSS, in the same run.
  const jitMain = await startMeshlet({
    key: 'meshlet-jit-main',
    label: 'meshlet, JIT on the main thread (MESHLET_MAIN_THREAD_JIT=1)',
    accessLog: false,
    upstreamPort: up,
    dir: tmp,
    env: { MESHLET_MAIN_THREAD_JIT: '1' },
  });
  // glibc's malloc (MESHLET_MALLOC=glibc) against jemalloc, which meshlet preloads when the host
  // has it: the allocator choice's cost in req/s, tail and RSS after load, in the same run.
  const glibc = await startMeshlet({
    key: 'meshlet-glibc',
    label: 'meshlet, glibc malloc (MESHLET_MALLOC=glibc)',
    accessLog: false,
    upstreamPort: up,
    dir: tmp,
    env: { MESHLET_MALLOC: 'glibc' },
  });
  const semi: Target[] = [];
  for (const mb of [0, 1, 4]) {
    semi.push(
      await startMeshlet({
        key: `meshlet-semi${mb}`,
        label: mb === 0 ? "meshlet, Node's default semi-space" : `meshlet, semi-space ${mb} MiB`,
        semiSpaceMb: mb,
        accessLog: false,
        upstreamPort: up,
        dir: tmp,
      }),
    );
  }
  const httpProxy = await startHttpProxy(up, tmp);
  const undiciProxy = await startUndiciProxy(up, tmp);
  const haproxy = await startHaproxy(up, tmp);
  if (haproxy === null)
    skipped.push({ target: 'HAProxy', reason: 'not installed (apt-get install haproxy)' });
  const nginx = await startNginxProxy(up, tmp);
  if (nginx === null)
    skipped.push({ target: 'nginx proxy', reason: 'not installed (apt-get install nginx)' });
  if (closedLoopTool === 'autocannon') notes.push('wrk not installed: closed loop measured with autocannon');
  const hop2 = await startMeshlet({
    key: 'meshlet-hop2',
    label: 'meshlet (second hop)',
    accessLog: false,
    upstreamPort: up,
    dir: tmp,
  });
  const hop1 = await startMeshlet({
    key: 'meshlet-2hops',
    label: 'meshlet → meshlet → app (plain)',
    accessLog: false,
    upstreamPort: hop2.port,
    dir: tmp,
  });

  // Two hops over mTLS: web's meshlet → (TLS 1.3, client certificate) → bench's inbound listener → app.
  const certs = join(tmp, 'certs');
  issueCerts(certs, ['bench', 'web']);
  const tlsYaml = (svc: string) =>
    `tls: { source: files, cert: ${join(certs, `${svc}.pem`)}, key: ${join(certs, `${svc}-key.pem`)}, ca: ${join(certs, 'ca.pem')} }`;
  const inboundPort = await freePort();
  const tlsHop2 = await startMeshlet({
    key: 'meshlet-mtls-hop2',
    label: 'meshlet (second hop, mTLS inbound)',
    accessLog: false,
    upstreamPort: up,
    dir: tmp,
    inboundPort,
    extraYaml: `service: { name: bench, port: ${up} }\n${tlsYaml('bench')}\n`,
  });
  const tlsHop1 = await startMeshlet({
    key: 'meshlet-2hops-mtls',
    label: 'meshlet → mTLS → meshlet → app',
    accessLog: false,
    upstreamPort: inboundPort,
    endpointYaml: `{ address: 127.0.0.1, port: ${inboundPort}, meta: { meshlet_inbound: mtls } }`,
    dir: tmp,
    extraYaml: `${tlsYaml('web')}\n`,
  });

  // The issue's idle-RSS config: a Consul registry (test/consul-double) with an app health check and
  // mTLS from the Connect CA. Read idle beside the others, then stopped: it takes no part in loads.
  let full: Awaited<ReturnType<typeof startFullMeshlet>> | null = null;
  try {
    full = await startFullMeshlet({
      key: 'meshlet-full',
      label: 'meshlet, full config (Consul registry + mTLS from the Connect CA)',
      dir: tmp,
    });
  } catch (err) {
    const why = (err as Error).message.split('\n')[0]!;
    notes.push(`full config (Consul registry + mTLS) not measured: ${why}`);
    log(`full config (Consul + mTLS) failed to start: ${(err as Error).message}`);
  }

  const proxies = [
    meshlet,
    meshletLog,
    jitMain,
    glibc,
    ...semi,
    undiciProxy,
    httpProxy,
    haproxy,
    nginx,
  ].filter((t): t is Target => t !== null);
  const closedTargets = [direct, ...proxies];
  await sleep(2000);
  const idleRss: Record<string, number> = {};
  for (const t of [...proxies, hop1, hop2, tlsHop1, tlsHop2, ...(full === null ? [] : [full.target])])
    if (t.pid !== null) idleRss[t.key] = rssMiB(t.pid);
  log(
    `idle RSS (MiB): ${Object.entries(idleRss)
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(', ')}`,
  );
  log(
    `idle RSS: plain ${idleRss.meshlet?.toFixed(1) ?? '–'} MiB, full (Consul + mTLS) ${idleRss['meshlet-full']?.toFixed(1) ?? '–'} MiB`,
  );
  if (full !== null) for (const c of [full.target.child!, ...full.helpers]) await stop(c);

  log(`warm-up: ${plan.warmS} s each`);
  for (const t of [...closedTargets, hop1]) {
    const r = await closedLoop(t.port, { connections: CONNECTIONS, durationS: plan.warmS });
    if (r.errors > 0 || !(r.requests > 0)) throw new Error(`${t.key} fails under load: ${fmtLoad(r)}`);
  }

  // --- closed loop, interleaved A B C … per round.
  type Row = ClosedLoopResult & { cpuUsPerReq: number | null; rssAfterMiB: number | null };
  /** One closed-loop run of `t` with the proxy's CPU per request and RSS right after; logged. */
  const measured = async (t: Target, connections: number): Promise<Row> => {
    const cpu0 = t.pid === null ? 0 : cpuSeconds(t.pid);
    const r = await closedLoop(t.port, { connections, durationS: plan.durationS });
    const cpu1 = t.pid === null ? 0 : cpuSeconds(t.pid);
    log(`  ${t.key.padEnd(16)} ${fmtLoad(r)}`);
    return {
      ...r,
      cpuUsPerReq: t.pid === null ? null : ((cpu1 - cpu0) * 1e6) / r.requests,
      rssAfterMiB: t.pid === null ? null : rssMiB(t.pid),
    };
  };
  const rounds: Record<string, Row>[] = [];
  for (let round = 1; round <= plan.rounds && !stopping; round++) {
    phase(
      `closed loop ${round}`,
      `closed loop round ${round}/${plan.rounds}: wrk-like -t1 -c${CONNECTIONS} ${plan.durationS} s each`,
    );
    const rows: Record<string, Row> = {};
    for (const t of closedTargets) rows[t.key] = await measured(t, CONNECTIONS);
    rounds.push(rows);
  }

  // --- many connections, one round: the semi-space choice under more requests in flight.
  phase('many connections', `closed loop -c${MANY_CONNECTIONS}, ${plan.durationS} s each, 1 round`);
  const many: NonNullable<BenchResults['many']> = { connections: MANY_CONNECTIONS, rows: {} };
  for (const t of [meshlet, jitMain, glibc, ...semi, undiciProxy, haproxy]) {
    if (t === null || stopping) continue;
    many.rows[t.key] = await measured(t, MANY_CONNECTIONS);
  }

  // --- fixed rate: added latency over direct, interleaved over rounds; added = row − direct in the round.
  phase('fixed rate', `fixed rate ${RATE} req/s, ${plan.rateS} s each, ${plan.rateRounds} round(s)`);
  const fixedRounds: Record<string, FixedRateResult>[] = [];
  const fixedTargets = [
    direct,
    meshlet,
    meshletLog,
    jitMain,
    glibc,
    semi[0]!,
    undiciProxy,
    httpProxy,
    haproxy,
    nginx,
  ].filter((t): t is Target => t !== null);
  // The generator on CPU 0, every server on the others: a starved generator sends late and
  // measures itself, not the proxies (the added p99 swung +5 to +20 ms between runs before).
  const cores = os.cpus().length;
  const serverCpus = cores > 2 ? `1-${cores - 1}` : '1';
  // The process serving a target: direct has no proxy pid of its own, its `child` is the upstream.
  const serverPid = (t: Target): number | null => t.pid ?? t.child?.pid ?? null;
  const servers = fixedTargets.map(serverPid).filter((p): p is number => p !== null);
  const pinned = cores >= 2 && servers.every((pid) => pinProcess(pid, serverCpus));
  if (pinned)
    notes.push(`fixed rate: load generator pinned to CPU 0, servers to CPU ${serverCpus} (taskset)`);
  else notes.push('fixed rate: processes not pinned (no taskset, or one core)');
  notes.push('fixed rate: every other server paused (SIGSTOP) while one is measured, upstream excepted');
  for (let round = 1; round <= plan.rateRounds && !stopping; round++) {
    const rows: Record<string, FixedRateResult> = {};
    for (const t of fixedTargets) {
      // The upstream (direct's server) and this target run; every other server is paused.
      const keep = new Set([serverPid(direct), serverPid(t)].filter((p): p is number => p !== null));
      const r = await aloneWith(keep, () =>
        fixedRate(t.port, RATE, plan.rateS, 64, pinned ? '0' : undefined),
      );
      rows[t.key] = r;
      log(
        `  ${round} ${t.key.padEnd(16)} p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms, ${r.completed}/${r.sent} ok, ${r.errors} errors, ${r.late} late`,
      );
    }
    fixedRounds.push(rows);
  }
  if (pinned) for (const pid of servers) pinProcess(pid, `0-${cores - 1}`);
  const fixed: Record<string, FixedSummary> = {};
  for (const t of fixedTargets) {
    const rows = fixedRounds.map((round) => round[t.key]!);
    const added = (pick: (x: FixedRateResult) => number) =>
      median(fixedRounds.map((round) => pick(round[t.key]!) - pick(round.direct!)));
    fixed[t.key] = {
      rate: RATE,
      sent: rows.reduce((a, x) => a + x.sent, 0),
      completed: rows.reduce((a, x) => a + x.completed, 0),
      errors: rows.reduce((a, x) => a + x.errors, 0),
      late: rows.reduce((a, x) => a + x.late, 0),
      p50Ms: median(rows.map((x) => x.p50Ms)),
      p90Ms: median(rows.map((x) => x.p90Ms)),
      p99Ms: median(rows.map((x) => x.p99Ms)),
      p999Ms: median(rows.map((x) => x.p999Ms)),
      maxMs: Math.max(...rows.map((x) => x.maxMs)),
      addedP50Ms: added((x) => x.p50Ms),
      addedP99Ms: added((x) => x.p99Ms),
    };
  }

  // --- 1 MiB responses.
  phase('1 MiB', `1 MiB responses, -c${CONNECTIONS}, ${plan.largeS} s each`);
  const large: Record<string, ClosedLoopResult & { rssAfterMiB: number | null }> = {};
  for (const t of [direct, meshlet, semi[0]!, httpProxy, haproxy, nginx]) {
    if (t === null || stopping) continue;
    const r = await closedLoop(t.port, { connections: CONNECTIONS, durationS: plan.largeS, path: '/1m.bin' });
    large[t.key] = { ...r, rssAfterMiB: t.pid === null ? null : rssMiB(t.pid) };
    log(
      `  ${t.key.padEnd(16)} ${(r.bytesPerSec / 1024 ** 2).toFixed(0)} MiB/s${r.errors > 0 ? `, ${r.errors} errors` : ''}`,
    );
  }

  // --- two hops.
  phase('two hops', `two hops, ${plan.hopS} s each`);
  const hops: Record<string, ClosedLoopResult & { cpuUsPerReq: number | null }> = {};
  for (const t of [direct, meshlet, hop1, tlsHop1]) {
    if (stopping) break;
    const pids =
      t === hop1
        ? [hop1.pid!, hop2.pid!]
        : t === tlsHop1
          ? [tlsHop1.pid!, tlsHop2.pid!]
          : t.pid === null
            ? []
            : [t.pid];
    const cpu0 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
    const r = await closedLoop(t.port, { connections: CONNECTIONS, durationS: plan.hopS });
    const cpu1 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
    hops[t.key] = { ...r, cpuUsPerReq: pids.length === 0 ? null : ((cpu1 - cpu0) * 1e6) / r.requests };
    log(`  ${t.key.padEnd(16)} ${fmtLoad(r)}`);
  }

  const labels: Record<string, string> = {};
  for (const t of [...closedTargets, hop1, tlsHop1]) labels[t.key] = t.label;
  if (full !== null) labels[full.target.key] = full.target.label;
  await killAll();

  // --- gRPC, with every HTTP server stopped: its own upstream (grpc-js), meshlet, HAProxy, nginx.
  let grpc: BenchResults['grpc'];
  if (!values['no-grpc'] && !stopping) {
    phase('gRPC', 'gRPC phase (unary closed loop, unary at 1,000 calls/s, one bidi stream)');
    try {
      grpc = await runGrpcPhase({ quick, dir: tmp, log, stopping: () => stopping });
    } catch (err) {
      notes.push(`gRPC phase failed: ${(err as Error).message}`);
      log(`gRPC phase failed: ${(err as Error).stack ?? String(err)}`);
    }
    await killAll();
  } else notes.push('gRPC phase skipped (--no-grpc)');

  // --- gateway mode: the edge listener with an RS256 JWT, without auth, and nginx as an edge proxy.
  let gateway: BenchResults['gateway'];
  if (!values['no-gateway'] && !stopping) {
    phase('gateway', 'gateway phase (JWT vs no auth vs nginx edge)');
    try {
      gateway = await runGatewayPhase({ quick, dir: tmp, log, stopping: () => stopping });
    } catch (err) {
      notes.push(`gateway phase failed: ${(err as Error).message}`);
      log(`gateway phase failed: ${(err as Error).stack ?? String(err)}`);
    }
    await killAll();
  } else notes.push('gateway phase skipped (--no-gateway)');

  // --- micro-benchmarks, with every server stopped.
  let micro: BenchResults['micro'] = { results: [], notes: ['skipped (--no-micro)'] };
  if (!values['no-micro']) {
    log('micro-benchmarks (tinybench)');
    const args = [fileURLToPath(new URL('micro.ts', import.meta.url)), '--json'];
    if (quick) args.push('--quick');
    const r = await runBounded(process.execPath, args, 180_000);
    if (r.code === 0) micro = JSON.parse(r.stdout) as BenchResults['micro'];
    else micro = { results: [], notes: [`micro-benchmarks failed: ${r.stderr.slice(0, 500)}`] };
  }

  notes.push(
    `1-minute load average at the start of each phase (2 would fill both cores): ${phaseLoad.join(', ')}`,
  );
  const results: BenchResults = {
    machine: { ...machine, loadAverageEnd: os.loadavg().map((l) => Math.round(l * 100) / 100) },
    quick,
    plan: { ...plan, connections: CONNECTIONS, rate: RATE, tool: closedLoopTool },
    upstream: upstreamKind,
    labels,
    skipped,
    notes,
    idleRss,
    rounds,
    fixedRounds,
    fixed,
    large,
    hops,
    many,
    ...(grpc === undefined ? {} : { grpc }),
    ...(gateway === undefined ? {} : { gateway }),
    micro,
  };
  const md = renderMarkdown(results, summarise(results));
  process.stdout.write(`\n${md}\n`);
  mkdirSync(resultsDir, { recursive: true });
  const stamp = machine.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const base = join(resultsDir, `${stamp}${quick ? '-quick' : ''}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(`${base}.md`, md);
  if (!quick) {
    writeFileSync(join(resultsDir, 'latest.md'), md);
    updateReadme(join(benchDir, 'README.md'), md);
  }
  log(`written: ${base}.json, ${base}.md${quick ? '' : ', bench/results/latest.md, bench/README.md'}`);
}

/** Read and write syscalls a process made so far (/proc/PID/io). */
function syscalls(pid: number): { r: number; w: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return { r: Number(/syscr: (\d+)/.exec(io)?.[1]), w: Number(/syscw: (\d+)/.exec(io)?.[1]) };
}

/** `--profile`: meshlet under the closed-loop load with --cpu-prof, then its top self-time frames. */
async function profile(upstreamPort: number): Promise<void> {
  const dir = join(tmp, 'prof');
  mkdirSync(dir, { recursive: true });
  const t = await startMeshlet({
    key: 'meshlet-prof',
    label: 'meshlet under --cpu-prof',
    accessLog: false,
    upstreamPort,
    dir: tmp,
    nodeFlags: [`--max-semi-space-size=${DEFAULT_SEMI_SPACE_MB}`, '--cpu-prof', `--cpu-prof-dir=${dir}`],
  });
  await closedLoop(t.port, { connections: CONNECTIONS, durationS: plan.warmS });
  const io0 = syscalls(t.pid!);
  const r = await closedLoop(t.port, { connections: CONNECTIONS, durationS: plan.durationS });
  const io1 = syscalls(t.pid!);
  log(`meshlet under --cpu-prof: ${fmtLoad(r)}`);
  const perReq = `read syscalls per request ${((io1.r - io0.r) / r.requests).toFixed(2)}, write syscalls per request ${((io1.w - io0.w) / r.requests).toFixed(2)} (from /proc/PID/io)`;
  await stop(t.child!, 10_000);
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) throw new Error('no .cpuprofile written');
  mkdirSync(resultsDir, { recursive: true });
  const lines = topSelfFrames(join(dir, file), 25).map(
    (f) => `| ${f.selfPct.toFixed(1)}% | ${f.selfMs.toFixed(0)} | \`${f.frame}\` |`,
  );
  const areas = selfByArea(join(dir, file))
    .map((a) => `| ${a.selfPct.toFixed(1)}% | ${a.area} |`)
    .join('\n');
  copyFileSync(join(dir, file), join(resultsDir, 'meshlet.cpuprofile'));
  const md = `# meshlet CPU profile under wrk -t1 -c${CONNECTIONS}, ${plan.durationS} s (${new Date().toISOString()})\n\nmeshlet ${values.ref === undefined ? 'working tree' : `--ref ${values.ref}`}; ${fmtLoad(r)} while profiling (the profiler itself slows it); ${perReq}. The profile is kept (not in git) as bench/results/meshlet.cpuprofile.\n\n## Top frames by self time\n\n| self | ms | frame |\n| ---: | ---: | --- |\n${lines.join('\n')}\n\n## Self time by area\n\n| self | area |\n| ---: | --- |\n${areas}\n`;
  process.stdout.write(`\n${md}\n`);
  writeFileSync(join(resultsDir, `profile${quick ? '-quick' : ''}.md`), md);
}

try {
  await main();
  await shutdown(0);
} catch (err) {
  log(`bench failed: ${(err as Error).stack ?? String(err)}`);
  await shutdown(1);
}
