// The gRPC phase of `npm run bench` (issue 12): unary calls/s (h2load, closed loop), unary latency
// at 1,000 calls/s (open loop) and messages/s over one bidi stream, through meshlet, HAProxy and
// nginx against a real grpc-js Echo server, with ratios taken within one run. See bench/README.md.
//
// A target that does not answer a gRPC call (meshlet before it speaks h2c, say) is reported as
// "failed: <reason>" and left out of the loads; HAProxy, nginx or h2load missing skip their rows
// (node:http2 stands in for h2load) with a note. Bounded: per target, warm-up + rounds × (unary +
// rate + stream) seconds (about 50 s in a full run, 9 s with --quick), each load killed after its
// time + 20 s.
//
// Standalone (prints the section; writes nothing): node bench/grpc.ts [--quick]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkUnary, replyFrameBytes, requestFrame, UNARY_PATH } from './lib/grpc-echo.ts';
import {
  type GrpcRateRun,
  type GrpcResults,
  type GrpcStreamRun,
  type GrpcUnaryRun,
  renderGrpc,
} from './lib/grpc-report.ts';
import {
  aloneWith,
  cpuSeconds,
  freePort,
  killAll,
  killAllNow,
  pinProcess,
  runBounded,
  start,
  TASKSET,
  versionOf,
  waitForPort,
  which,
} from './lib/proc.ts';
import { HAPROXY, NGINX, startMeshlet, type Target, useMeshletMain } from './lib/targets.ts';

const H2LOAD = which('h2load');
const GRPC_UPSTREAM = fileURLToPath(new URL('servers/grpc-upstream.ts', import.meta.url));
const GRPC_LOAD = fileURLToPath(new URL('grpc-load.ts', import.meta.url));
/** h2load -c and -m: 4 connections × 8 streams = 32 calls in flight, the HTTP closed loop's 32. */
const CONNECTIONS = 4;
const STREAMS = 8;
const RATE = 1000;

/** Seconds per load of the phase. */
export function grpcPlan(
  quick: boolean,
): Omit<GrpcResults['plan'], 'tool' | 'connections' | 'streamsPerConnection' | 'rate'> {
  return quick
    ? { warmS: 1, unaryS: 2, rounds: 1, rateS: 2, rateRounds: 1, streamS: 2, streamRounds: 1 }
    : { warmS: 1, unaryS: 5, rounds: 3, rateS: 5, rateRounds: 3, streamS: 4, streamRounds: 3 };
}

/** HAProxy, one thread, `mode http` with h2 on both sides (h2c prior knowledge). */
async function startHaproxyH2(upstreamPort: number, dir: string): Promise<Target | null> {
  if (HAPROXY === null) return null;
  const port = await freePort();
  const conf = join(dir, 'haproxy-grpc.cfg');
  writeFileSync(
    conf,
    `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:${port} proto h2
  default_backend be
backend be
  server app 127.0.0.1:${upstreamPort} proto h2
`,
  );
  const child = start(HAPROXY, ['-db', '-f', conf], { logFile: join(dir, 'haproxy-grpc.log') });
  await waitForPort(port, 20_000, child);
  return {
    key: 'haproxy',
    label: 'HAProxy, 1 thread (mode http, h2 both sides)',
    port,
    pid: child.pid ?? null,
    child,
  };
}

/** nginx, one worker (no master): h2c listener, `grpc_pass` to the upstream with keep-alive. */
async function startNginxGrpc(upstreamPort: number, dir: string): Promise<Target | null> {
  if (NGINX === null) return null;
  const port = await freePort();
  // `http2 on;` exists from nginx 1.25.1; before it, `listen … http2`.
  const version = /nginx\/(\d+)\.(\d+)\.(\d+)/.exec(versionOf(NGINX, ['-v']) ?? '');
  const [maj, min, pat] =
    version === null ? [0, 0, 0] : (version.slice(1).map(Number) as [number, number, number]);
  const modern = maj > 1 || (maj === 1 && (min > 25 || (min === 25 && pat >= 1)));
  const conf = join(dir, 'nginx-grpc.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
master_process off;
daemon off;
pid ${dir}/nginx-grpc.pid;
error_log ${dir}/nginx-grpc.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  client_body_temp_path ${dir}/nginx-grpc-body;
  upstream grpcup { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:${port}${modern ? '' : ' http2'};
    ${modern ? 'http2 on;' : ''}
    http2_max_concurrent_streams 1024;
    # A bidi stream is one request body: without this, nginx cuts it at 1 MiB (client_max_body_size).
    client_max_body_size 0;
    location / { grpc_pass grpc://grpcup; }
  }
}
`,
  );
  const child = start(NGINX, ['-p', dir, '-e', `${dir}/nginx-grpc.error.log`, '-c', conf]);
  await waitForPort(port, 20_000, child);
  return { key: 'nginx', label: 'nginx, 1 worker (grpc_pass)', port, pid: child.pid ?? null, child };
}

/** Parses h2load's summary; calls/s is over the main duration (after --warm-up-time). */
export function parseH2load(
  out: string,
): Omit<GrpcUnaryRun, 'p50Ms' | 'p99Ms' | 'cpuUsPerCall' | 'checkAfter'> {
  const finished = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(out);
  const req =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      out,
    );
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  if (finished === null || req === null) throw new Error(`h2load output not understood: ${out.slice(-400)}`);
  const callsPerSec = Number(finished[2]);
  const calls = Number(req[4]);
  const bad = Number(req[5]) + Number(req[6]) + Number(req[7]);
  const non2xx = codes === null ? 0 : Number(codes[2]) + Number(codes[3]) + Number(codes[4]);
  return {
    tool: 'h2load',
    calls,
    seconds: callsPerSec > 0 ? calls / callsPerSec : Number.NaN,
    callsPerSec,
    errors: bad + non2xx,
  };
}

/** p50 and p99 (ms) of the 200 answers in an h2load --log-file (start µs, status, elapsed µs). */
function logQuantiles(file: string): { p50Ms: number; p99Ms: number } {
  const us: number[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [, status, elapsed] = line.split('\t');
    if (status === '200') us.push(Number(elapsed));
  }
  us.sort((a, b) => a - b);
  const q = (p: number) =>
    us.length === 0 ? Number.NaN : us[Math.min(us.length - 1, Math.floor(p * us.length))]! / 1000;
  return { p50Ms: q(0.5), p99Ms: q(0.99) };
}

/** One closed-loop unary run against 127.0.0.1:port. */
async function unaryRun(
  port: number,
  seconds: number,
  warmS: number,
  dir: string,
  frameFile: string,
): Promise<GrpcUnaryRun> {
  const limit = (seconds + warmS + 20) * 1000;
  if (H2LOAD !== null) {
    const log = join(dir, 'h2load.log');
    rmSync(log, { force: true });
    const args = [
      '-t1',
      `-c${CONNECTIONS}`,
      `-m${STREAMS}`,
      `-D${seconds}`,
      `--warm-up-time=${warmS}`,
      '-d',
      frameFile,
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      `--log-file=${log}`,
      `http://127.0.0.1:${port}${UNARY_PATH}`,
    ];
    const r = await runBounded(H2LOAD, args, limit);
    if (r.code !== 0)
      throw new Error(`h2load exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-300)}`);
    const x = parseH2load(r.stdout);
    return {
      ...x,
      ...logQuantiles(log),
      checkAfter: null,
      cpuUsPerCall: null,
    };
  }
  const args = [
    GRPC_LOAD,
    '--port',
    String(port),
    '--mode',
    'unary',
    '--duration',
    String(seconds),
    '--warmup',
    String(warmS),
    '--connections',
    String(CONNECTIONS),
    '--concurrency',
    String(CONNECTIONS * STREAMS),
  ];
  const r = await runBounded(process.execPath, args, limit);
  if (r.code !== 0) throw new Error(`grpc-load exited ${r.code}: ${r.stderr.trim().slice(-300)}`);
  const j = JSON.parse(r.stdout) as {
    calls: number;
    seconds: number;
    callsPerSec: number;
    p50Ms: number;
    p99Ms: number;
    errors: number;
  };
  return { tool: 'node:http2', ...j, checkAfter: null, cpuUsPerCall: null };
}

async function rateRun(port: number, seconds: number, cpus: string | undefined): Promise<GrpcRateRun> {
  const args = [
    '--expose-gc',
    '--max-semi-space-size=1',
    '--single-threaded',
    GRPC_LOAD,
    '--port',
    String(port),
    '--mode',
    'rate',
    '--rate',
    String(RATE),
    '--duration',
    String(seconds),
  ];
  const limit = (seconds + 25) * 1000;
  const r =
    cpus !== undefined && TASKSET !== null
      ? await runBounded(TASKSET, ['-c', cpus, process.execPath, ...args], limit)
      : await runBounded(process.execPath, args, limit);
  if (r.code !== 0) throw new Error(`grpc-load exited ${r.code}: ${r.stderr.trim().slice(-300)}`);
  return JSON.parse(r.stdout) as GrpcRateRun;
}

async function streamRun(port: number, seconds: number): Promise<Omit<GrpcStreamRun, 'cpuUsPerMessage'>> {
  const args = [GRPC_LOAD, '--port', String(port), '--mode', 'bidi', '--duration', String(seconds)];
  const r = await runBounded(process.execPath, args, (seconds + 25) * 1000);
  if (r.code !== 0) throw new Error(`grpc-load exited ${r.code}: ${r.stderr.trim().slice(-300)}`);
  return JSON.parse(r.stdout) as GrpcStreamRun;
}

function grpcJsVersion(): string {
  try {
    const p = new URL('../node_modules/@grpc/grpc-js/package.json', import.meta.url);
    return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

/** Options of {@link runGrpcPhase}. */
export interface GrpcPhaseOptions {
  quick: boolean;
  dir: string;
  log: (line: string) => void;
  /** Checked between loads; true stops the phase early (SIGINT). */
  stopping?: () => boolean;
}

/**
 * Runs the gRPC phase: starts its own upstream and proxies (every other server of the run should be
 * stopped first), measures, and leaves its children to the caller's killAll.
 */
export async function runGrpcPhase(o: GrpcPhaseOptions): Promise<GrpcResults> {
  const plan = grpcPlan(o.quick);
  const stopping = o.stopping ?? (() => false);
  const failed: Record<string, string> = {};
  const skipped: GrpcResults['skipped'] = [];
  const notes: string[] = [];
  const frameFile = join(o.dir, 'grpc-request.bin');
  writeFileSync(frameFile, requestFrame());

  const upPort = await freePort();
  const upstream = start(process.execPath, [GRPC_UPSTREAM, String(upPort)], {
    logFile: join(o.dir, 'grpc-upstream.log'),
  });
  await waitForPort(upPort, 20_000, upstream);
  const direct: Target = {
    key: 'direct',
    label: 'direct (no proxy)',
    port: upPort,
    pid: null,
    child: upstream,
  };
  const labels: Record<string, string> = { direct: direct.label };
  const directCheck = await checkUnary(upPort);
  if (directCheck !== null) throw new Error(`the grpc-js upstream does not answer: ${directCheck}`);

  const candidates: Target[] = [direct];
  const meshletLabel = 'meshlet, defaults (per-upstream listener, protocol: grpc)';
  labels.meshlet = meshletLabel;
  try {
    candidates.push(
      await startMeshlet({
        key: 'meshlet',
        label: meshletLabel,
        accessLog: false,
        upstreamPort: upPort,
        dir: join(o.dir),
        upstream: 'echo',
        protocol: 'grpc',
      }),
    );
  } catch (err) {
    failed.meshlet = `did not start: ${(err as Error).message}`;
  }
  for (const [name, startIt, install] of [
    ['HAProxy', startHaproxyH2, 'haproxy'],
    ['nginx', startNginxGrpc, 'nginx'],
  ] as const) {
    try {
      const t = await startIt(upPort, o.dir);
      if (t === null) skipped.push({ target: name, reason: `not installed (apt-get install ${install})` });
      else {
        candidates.push(t);
        labels[t.key] = t.label;
      }
    } catch (err) {
      failed[name.toLowerCase()] = `did not start: ${(err as Error).message}`;
    }
  }
  // Only targets that answer a real grpc-js call are loaded (a listener without h2c fails here).
  const live: Target[] = [];
  for (const t of candidates) {
    const why = await checkUnary(t.port);
    if (why === null) live.push(t);
    else failed[t.key] = `a grpc-js unary call through it: ${why}`;
  }
  const tool = H2LOAD === null ? 'node:http2' : 'h2load';
  if (H2LOAD === null) {
    skipped.push({
      target: 'h2load',
      reason: 'not installed (apt-get install nghttp2-client): closed loop from node:http2 instead',
    });
  }
  o.log(
    `gRPC phase: ${live.map((t) => t.key).join(', ')}${
      Object.keys(failed).length > 0
        ? `; failed: ${Object.entries(failed)
            .map(([k, v]) => `${k} (${v})`)
            .join(', ')}`
        : ''
    }`,
  );

  /** Drops a target that broke during a load, with the reason. */
  const broke = (t: Target, why: string) => {
    failed[t.key] = why;
    const i = live.indexOf(t);
    if (i >= 0) live.splice(i, 1);
    o.log(`  ${t.key} failed: ${why}`);
  };
  const proxyCpu = (t: Target) => (t.pid === null ? 0 : cpuSeconds(t.pid));

  // Warm-up: one short closed loop each.
  for (const t of [...live]) {
    try {
      await unaryRun(t.port, plan.warmS, 0, o.dir, frameFile);
    } catch (err) {
      broke(t, `warm-up: ${(err as Error).message}`);
    }
  }

  const unaryRounds: Record<string, GrpcUnaryRun>[] = [];
  for (let round = 1; round <= plan.rounds && !stopping(); round++) {
    o.log(
      `gRPC unary closed loop round ${round}/${plan.rounds}: ${tool} ${CONNECTIONS}×${STREAMS} in flight, ${plan.unaryS} s each`,
    );
    const rows: Record<string, GrpcUnaryRun> = {};
    for (const t of [...live]) {
      try {
        const cpu0 = proxyCpu(t);
        const r = await unaryRun(t.port, plan.unaryS, 1, o.dir, frameFile);
        const cpu1 = proxyCpu(t);
        r.cpuUsPerCall = t.pid === null ? null : ((cpu1 - cpu0) * 1e6) / Math.max(1, r.calls);
        rows[t.key] = r;
        o.log(
          `  ${t.key.padEnd(10)} ${Math.round(r.callsPerSec)} calls/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, ${r.errors} errors`,
        );
        // h2load cannot read trailers: a real grpc-js call right after the run checks grpc-status.
        r.checkAfter = await checkUnary(t.port);
        if (r.checkAfter !== null)
          o.log(`  ${t.key}: the grpc-js call after the run failed: ${r.checkAfter}`);
      } catch (err) {
        broke(t, `closed loop: ${(err as Error).message}`);
      }
    }
    unaryRounds.push(rows);
  }

  // Fixed rate: the generator on CPU 0, the servers on the others; everything else paused.
  const cores = os.cpus().length;
  const serverCpus = cores > 2 ? `1-${cores - 1}` : '1';
  const serverPid = (t: Target): number | null => t.pid ?? t.child?.pid ?? null;
  const servers = live.map(serverPid).filter((p): p is number => p !== null);
  const pinned = cores >= 2 && servers.length > 0 && servers.every((pid) => pinProcess(pid, serverCpus));
  notes.push(
    pinned
      ? `fixed rate: generator pinned to CPU 0, servers to CPU ${serverCpus}; every other server paused (SIGSTOP) while one is measured`
      : 'fixed rate: processes not pinned (no taskset, or one core); every other server paused while one is measured',
  );
  const rateRounds: Record<string, GrpcRateRun>[] = [];
  for (let round = 1; round <= plan.rateRounds && !stopping(); round++) {
    o.log(`gRPC fixed rate round ${round}/${plan.rateRounds}: ${RATE} calls/s, ${plan.rateS} s each`);
    const rows: Record<string, GrpcRateRun> = {};
    for (const t of [...live]) {
      const keep = new Set([serverPid(direct), serverPid(t)].filter((p): p is number => p !== null));
      try {
        const r = await aloneWith(keep, () => rateRun(t.port, plan.rateS, pinned ? '0' : undefined));
        rows[t.key] = r;
        o.log(
          `  ${t.key.padEnd(10)} p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms, ${r.completed}/${r.sent} ok, ${r.errors} errors, ${r.late} late${r.firstError === null ? '' : ` (${r.firstError})`}`,
        );
        if (r.completed === 0) broke(t, `fixed rate: no call succeeded (${r.firstError ?? 'no answer'})`);
      } catch (err) {
        broke(t, `fixed rate: ${(err as Error).message}`);
      }
    }
    rateRounds.push(rows);
  }
  if (pinned) for (const pid of servers) pinProcess(pid, `0-${cores - 1}`);

  const streamRounds: Record<string, GrpcStreamRun>[] = [];
  for (let round = 1; round <= plan.streamRounds && !stopping(); round++) {
    o.log(`gRPC bidi stream round ${round}/${plan.streamRounds}: ${plan.streamS} s each`);
    const rows: Record<string, GrpcStreamRun> = {};
    for (const t of [...live]) {
      try {
        const cpu0 = proxyCpu(t);
        const r = await streamRun(t.port, plan.streamS);
        const cpu1 = proxyCpu(t);
        rows[t.key] = {
          ...r,
          cpuUsPerMessage: t.pid === null ? null : ((cpu1 - cpu0) * 1e6) / Math.max(1, r.messages),
        };
        o.log(
          `  ${t.key.padEnd(10)} ${Math.round(r.messagesPerSec)} messages/s${r.firstError === null ? '' : `, ${r.firstError}`}`,
        );
        if (r.messages === 0) broke(t, `bidi stream: no reply (${r.firstError ?? 'no answer'})`);
      } catch (err) {
        broke(t, `bidi stream: ${(err as Error).message}`);
      }
    }
    streamRounds.push(rows);
  }

  return {
    plan: { ...plan, rate: RATE, connections: CONNECTIONS, streamsPerConnection: STREAMS, tool },
    upstream: `@grpc/grpc-js ${grpcJsVersion()} server on Node ${process.version} (bench/servers/grpc-upstream.ts)`,
    requestFrameBytes: requestFrame().length,
    replyFrameBytes: replyFrameBytes(),
    labels,
    failed,
    skipped,
    notes,
    unaryRounds,
    rateRounds,
    streamRounds,
  };
}

// Standalone: the phase alone, its section printed (nothing written to bench/results/).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes('--quick');
  const dir = mkdtempSync(join(os.tmpdir(), 'meshlet-bench-grpc-'));
  const root = fileURLToPath(new URL('..', import.meta.url));
  // meshlet compiled, as run.ts measures it; from src/ (type stripping) when the build fails.
  try {
    execFileSync(
      process.execPath,
      [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')],
      { stdio: 'inherit' },
    );
    if (existsSync(join(root, 'dist/cli/main.js'))) useMeshletMain(join(root, 'dist/cli/main.js'));
  } catch {
    process.stderr.write('build failed: meshlet runs from src/ (type stripping)\n');
  }
  let stopped = false;
  const finish = async (code: number) => {
    await killAll();
    rmSync(dir, { recursive: true, force: true });
    process.exit(code);
  };
  process.on('SIGINT', () => {
    stopped = true;
    void finish(130);
  });
  process.on('exit', killAllNow);
  try {
    const g = await runGrpcPhase({
      quick,
      dir,
      log: (l) => process.stderr.write(`${l}\n`),
      stopping: () => stopped,
    });
    process.stdout.write(`${renderGrpc(g).join('\n')}\n`);
    await finish(0);
  } catch (err) {
    process.stderr.write(`gRPC phase failed: ${(err as Error).stack ?? String(err)}\n`);
    await finish(1);
  }
}
