// The gRPC phase's figures: what a run stores, the medians and within-round ratios, the issue 12
// targets, and the markdown section of the report.
import type { FixedRateResult } from './load.ts';
import { median, type Verdict } from './report.ts';

/** One closed-loop unary run (h2load, else bench/grpc-load.ts --mode unary). */
export interface GrpcUnaryRun {
  tool: 'h2load' | 'node:http2';
  calls: number;
  seconds: number;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Failed, errored or timed-out streams and non-2xx answers (h2load); non-OK calls (node:http2). */
  errors: number;
  /** A grpc-js unary call right after the run (h2load cannot read grpc-status): null = OK, else why it failed. */
  checkAfter: string | null;
  /** (utime + stime) of the proxy process over the run ÷ calls; null for direct. */
  cpuUsPerCall: number | null;
}

/** One fixed-rate unary run (bench/grpc-load.ts --mode rate). */
export interface GrpcRateRun extends FixedRateResult {
  firstError: string | null;
}

/** One bidi streaming run (bench/grpc-load.ts --mode bidi). */
export interface GrpcStreamRun {
  messages: number;
  seconds: number;
  messagesPerSec: number;
  errors: number;
  firstError: string | null;
  cpuUsPerMessage: number | null;
}

/** Everything the gRPC phase measured; `BenchResults.grpc` (runs before 2026-12-03 lack it). */
export interface GrpcResults {
  plan: {
    warmS: number;
    unaryS: number;
    rounds: number;
    rate: number;
    rateS: number;
    rateRounds: number;
    streamS: number;
    streamRounds: number;
    /** h2load -c (connections) and -m (concurrent streams per connection). */
    connections: number;
    streamsPerConnection: number;
    tool: 'h2load' | 'node:http2';
  };
  upstream: string;
  requestFrameBytes: number;
  replyFrameBytes: number;
  labels: Record<string, string>;
  /** Targets that did not answer a gRPC call (or broke under load): key → reason. */
  failed: Record<string, string>;
  skipped: { target: string; reason: string }[];
  notes: string[];
  unaryRounds: Record<string, GrpcUnaryRun>[];
  rateRounds: Record<string, GrpcRateRun>[];
  streamRounds: Record<string, GrpcStreamRun>[];
}

/** The per-round ratio a/b of `pick`, median over rounds; null when no round has both. */
function ratio<T>(
  rounds: Record<string, T>[],
  key: string,
  ref: string,
  pick: (x: T) => number,
): number | null {
  const xs: number[] = [];
  for (const round of rounds) {
    const a = round[key];
    const b = round[ref];
    if (a === undefined || b === undefined || !(pick(b) > 0)) continue;
    xs.push(pick(a) / pick(b));
  }
  return xs.length === 0 ? null : median(xs);
}

/** Median over rounds of (row − direct) of `pick`, per round. */
function added<T>(rounds: Record<string, T>[], key: string, pick: (x: T) => number): number | null {
  const xs: number[] = [];
  for (const round of rounds) {
    const a = round[key];
    const d = round.direct;
    if (a !== undefined && d !== undefined) xs.push(pick(a) - pick(d));
  }
  return xs.length === 0 ? null : median(xs);
}

function keysOf<T>(rounds: Record<string, T>[]): string[] {
  const keys = new Set<string>();
  for (const r of rounds) for (const k of Object.keys(r)) keys.add(k);
  return [...keys];
}

const fmt = (digits: number) => (x: number | null | undefined) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
const f1 = fmt(1);
const f2 = fmt(2);
const f3 = fmt(3);
const signed = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x)
    ? '–'
    : `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(3)}`;
const k = (x: number): string => (Number.isFinite(x) ? `${(x / 1000).toFixed(1)}k` : '–');
const times = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : `${x.toFixed(2)}×`;

/** The issue 12 benchmark targets, checked against meshlet's gRPC rows. */
export function grpcVerdicts(g: GrpcResults): Verdict[] {
  const out: Verdict[] = [];
  const why = (key: string, name: string): string | null => {
    if (g.failed[key] !== undefined) return `not measured (${name} failed: ${g.failed[key]})`;
    const skipped = g.skipped.find((s) => s.target === name);
    return skipped === undefined ? null : `not measured (${name}: ${skipped.reason})`;
  };
  const check = (
    target: string,
    goal: string,
    value: number | null,
    limit: number,
    atLeast: boolean,
    unit: string,
    missing: string | null,
  ) => {
    if (missing !== null || value === null || !Number.isFinite(value)) {
      out.push({ target, goal, measured: missing ?? 'not measured', met: null });
      return;
    }
    const met = atLeast ? value >= limit : value <= limit;
    const shown = unit === ' ms' ? `${signed(value)} ms` : `${f2(value)}${unit}`;
    out.push({
      target,
      goal,
      measured: `${shown} (${met ? 'met' : 'missed'}; ${f2(value / limit)}× the goal)`,
      met,
    });
  };
  const missing = (anchor: boolean) =>
    why('meshlet', 'meshlet') ?? (anchor ? why('haproxy', 'HAProxy') : why('direct', 'direct'));
  check(
    'gRPC unary calls/s vs HAProxy',
    '≥ 0.25×',
    ratio(g.unaryRounds, 'meshlet', 'haproxy', (x) => x.callsPerSec),
    0.25,
    true,
    '×',
    missing(true),
  );
  const direct = g.rateRounds.map((r) => r.direct).filter((x) => x !== undefined);
  const lateShare =
    direct.reduce((a, x) => a + x.late, 0) /
    Math.max(
      1,
      direct.reduce((a, x) => a + x.sent, 0),
    );
  check(
    `gRPC added p50 at ${g.plan.rate.toLocaleString('en')} calls/s`,
    '≤ +0.5 ms',
    added(g.rateRounds, 'meshlet', (x) => x.p50Ms),
    0.5,
    false,
    ' ms',
    missing(false),
  );
  if (lateShare > 0.01) {
    const v = out[out.length - 1]!;
    v.measured += ' — unreliable: the generator itself fell behind (machine overloaded)';
    v.met = null;
  }
  check(
    'gRPC bidi stream messages/s vs HAProxy',
    '≥ 0.3×',
    ratio(g.streamRounds, 'meshlet', 'haproxy', (x) => x.messagesPerSec),
    0.3,
    true,
    '×',
    missing(true),
  );
  return out;
}

/** The gRPC section of the report (markdown lines); its verdicts go in their own table. */
export function renderGrpc(g: GrpcResults): string[] {
  const L: string[] = [];
  const p = g.plan;
  const label = (key: string) => g.labels[key] ?? key;
  const order = Object.keys(g.labels);
  L.push('## gRPC (Echo service, grpc-js upstream, h2c on 127.0.0.1)');
  L.push('');
  L.push(
    `Upstream: ${g.upstream}. Every unary call posts the same ${g.requestFrameBytes}-byte gRPC frame (a 100-byte message) to \`/meshlet.test.v1.Echo/Unary\` and gets a ${g.replyFrameBytes}-byte frame back.`,
  );
  L.push('');
  L.push(
    `### Unary, closed loop: ${p.tool === 'h2load' ? `h2load -t1 -c${p.connections} -m${p.streamsPerConnection}` : `node:http2, ${p.connections} sessions × ${p.streamsPerConnection} calls in flight`}, ${p.unaryS} s × ${g.unaryRounds.length} round(s), interleaved`,
  );
  L.push('');
  L.push(
    'Medians over rounds; ratios taken within a round, then the median. CPU = (utime + stime) of the proxy over the run ÷ calls. Errors = the failed, errored and timed-out streams and non-2xx answers; h2load cannot read trailers, so every target first answers a grpc-js unary call (else its rows read "failed") and again right after each run (grpc-status 0 and the echoed message).',
  );
  L.push('');
  L.push(
    '| target | calls/s | × direct | × HAProxy | × nginx | p50 ms | p99 ms | CPU µs/call | grpc-js call after each run | errors |',
  );
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const unaryKeys = keysOf(g.unaryRounds);
  for (const key of order) {
    if (!unaryKeys.includes(key)) {
      if (g.failed[key] !== undefined) L.push(`| ${label(key)} | failed: ${g.failed[key]} | | | | | | | | |`);
      continue;
    }
    const rows = g.unaryRounds.map((r) => r[key]).filter((x) => x !== undefined);
    const cpu = rows.map((x) => x.cpuUsPerCall).filter((x): x is number => x !== null);
    const checks = rows.filter((x) => x.checkAfter !== null);
    L.push(
      `| ${label(key)}${g.failed[key] === undefined ? '' : ` (then failed: ${g.failed[key]})`} | ${k(median(rows.map((x) => x.callsPerSec)))} | ${times(ratio(g.unaryRounds, key, 'direct', (x) => x.callsPerSec))} | ${times(ratio(g.unaryRounds, key, 'haproxy', (x) => x.callsPerSec))} | ${times(ratio(g.unaryRounds, key, 'nginx', (x) => x.callsPerSec))} | ${f2(median(rows.map((x) => x.p50Ms)))} | ${f2(median(rows.map((x) => x.p99Ms)))} | ${cpu.length === 0 ? '–' : f1(median(cpu))} | ${checks.length === 0 ? `ok × ${rows.length}` : `**failed ${checks.length}/${rows.length}**: ${checks[0]!.checkAfter}`} | ${rows.reduce((a, x) => a + x.errors, 0)} |`,
    );
  }
  L.push('');
  L.push(
    `### Unary at a fixed rate: ${p.rate} calls/s over one HTTP/2 connection (bench/grpc-load.ts), ${p.rateS} s each × ${g.rateRounds.length} round(s), interleaved`,
  );
  L.push('');
  L.push(
    'Latency from send to the end of the stream; only HTTP 200 with grpc-status 0 counts, anything else is an error. Medians over rounds; added = this row − direct in the same round, then the median. Late sends: > 5 ms behind schedule (the generator itself was starved).',
  );
  L.push('');
  L.push(
    '| target | p50 ms | p90 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | errors | late sends |',
  );
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const rateKeys = keysOf(g.rateRounds);
  for (const key of order) {
    if (!rateKeys.includes(key)) {
      if (g.failed[key] !== undefined) L.push(`| ${label(key)} | failed: ${g.failed[key]} | | | | | | | |`);
      continue;
    }
    const rows = g.rateRounds.map((r) => r[key]).filter((x) => x !== undefined);
    const m = (pick: (x: GrpcRateRun) => number) => median(rows.map(pick));
    L.push(
      `| ${label(key)} | ${f3(m((x) => x.p50Ms))} | ${f3(m((x) => x.p90Ms))} | ${f3(m((x) => x.p99Ms))} | ${f3(m((x) => x.p999Ms))} | ${signed(added(g.rateRounds, key, (x) => x.p50Ms))} | ${signed(added(g.rateRounds, key, (x) => x.p99Ms))} | ${rows.reduce((a, x) => a + x.errors, 0)} | ${rows.reduce((a, x) => a + x.late, 0)} |`,
    );
  }
  L.push('');
  L.push(
    `### Bidi streaming: messages/s over one Echo/Bidi stream (grpc-js client), ${p.streamS} s × ${g.streamRounds.length} round(s), interleaved`,
  );
  L.push('');
  L.push(
    "One stream per run; the client writes with backpressure (at most 1,024 messages unanswered) and counts replies after a 1 s warm-up. CPU = the proxy's (utime + stime) ÷ messages.",
  );
  L.push('');
  L.push('| target | messages/s | × direct | × HAProxy | × nginx | CPU µs/message | errors |');
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  const streamKeys = keysOf(g.streamRounds);
  for (const key of order) {
    if (!streamKeys.includes(key)) {
      if (g.failed[key] !== undefined) L.push(`| ${label(key)} | failed: ${g.failed[key]} | | | | | |`);
      continue;
    }
    const rows = g.streamRounds.map((r) => r[key]).filter((x) => x !== undefined);
    const cpu = rows.map((x) => x.cpuUsPerMessage).filter((x): x is number => x !== null);
    L.push(
      `| ${label(key)} | ${k(median(rows.map((x) => x.messagesPerSec)))} | ${times(ratio(g.streamRounds, key, 'direct', (x) => x.messagesPerSec))} | ${times(ratio(g.streamRounds, key, 'haproxy', (x) => x.messagesPerSec))} | ${times(ratio(g.streamRounds, key, 'nginx', (x) => x.messagesPerSec))} | ${cpu.length === 0 ? '–' : f2(median(cpu))} | ${rows.reduce((a, x) => a + x.errors, 0)} |`,
    );
  }
  L.push('');
  L.push('### Targets (issue 12, gRPC)');
  L.push('');
  L.push('| target | goal | measured | |');
  L.push('| --- | --- | --- | --- |');
  for (const v of grpcVerdicts(g))
    L.push(
      `| ${v.target} | ${v.goal} | ${v.measured} | ${v.met === null ? '–' : v.met ? 'met' : '**missed**'} |`,
    );
  L.push('');
  if (g.skipped.length > 0 || g.notes.length > 0 || Object.keys(g.failed).length > 0) {
    for (const x of g.skipped) L.push(`- gRPC ${x.target}: skipped, ${x.reason}`);
    for (const [key, why] of Object.entries(g.failed)) L.push(`- gRPC ${label(key)}: failed: ${why}`);
    for (const n of g.notes) L.push(`- gRPC: ${n}`);
    L.push('');
  }
  return L;
}
