// Turns a bench run into figures with ratios (taken within one round) and a markdown report.
import { readFileSync, writeFileSync } from 'node:fs';
import type { ClosedLoopResult, FixedRateResult } from './load.ts';
import { type GrpcResults, renderGrpc } from './grpc-report.ts';
import { millions } from './ops-format.ts';
import { type GatewayResults, renderGateway } from '../gateway.ts';

/** Fixed-rate figures of one target: medians over rounds; added = median of (row − direct) per round. */
export interface FixedSummary extends FixedRateResult {
  addedP50Ms: number;
  addedP99Ms: number;
}

/** Everything a run measured; written as JSON to bench/results/. */
export interface BenchResults {
  machine: {
    date: string;
    cores: number;
    cpu: string;
    memoryGiB: number;
    kernel: string;
    node: string;
    tools: Record<string, string | null>;
    commit: string;
    loadAverage: number[];
    loadAverageEnd?: number[];
  };
  quick: boolean;
  plan: Record<string, number | string>;
  upstream: string;
  labels: Record<string, string>;
  skipped: { target: string; reason: string }[];
  notes: string[];
  idleRss: Record<string, number>;
  rounds: Record<string, ClosedLoopResult & { cpuUsPerReq: number | null; rssAfterMiB: number | null }>[];
  fixedRounds: Record<string, FixedRateResult>[];
  fixed: Record<string, FixedSummary>;
  large: Record<string, ClosedLoopResult & { rssAfterMiB: number | null }>;
  hops: Record<string, ClosedLoopResult & { cpuUsPerReq: number | null }>;
  /** One closed-loop round at more connections (meshlet's semi-space sizes, bare undici, HAProxy); runs before 2026-12-01 lack it. */
  many?: {
    connections: number;
    rows: Record<string, ClosedLoopResult & { cpuUsPerReq: number | null; rssAfterMiB: number | null }>;
  };
  /** The gRPC phase (bench/grpc.ts); runs before 2026-12-03, and --no-grpc runs, lack it. */
  grpc?: GrpcResults;
  /** The gateway phase (bench/gateway.ts); runs before 2026-12-03, and --no-gateway runs, lack it. */
  gateway?: GatewayResults;
  micro: { results: { group: string; name: string; opsPerSec: number; rme: number }[]; notes: string[] };
}

/** One fixed-rate round, meshlet against HAProxy: the issue's per-round test of added p99. */
export interface FixedRoundVerdict {
  round: number;
  /** meshlet − direct in this round, ms. */
  addedP50Ms: number;
  addedP99Ms: number;
  /** HAProxy − direct in this round, ms. */
  haproxyAddedP99Ms: number;
  /** meshlet's added p99 ≤ HAProxy's added p99 + 1 ms, in this round. */
  met: boolean;
}

/** Per fixed-rate round: meshlet's added p50/p99 and whether its added p99 stayed within HAProxy's + 1 ms. */
export function fixedPerRound(r: BenchResults): FixedRoundVerdict[] {
  const out: FixedRoundVerdict[] = [];
  r.fixedRounds.forEach((round, i) => {
    const { direct: d, meshlet: m, haproxy: h } = round;
    if (d === undefined || m === undefined || h === undefined) return;
    const addedP99Ms = m.p99Ms - d.p99Ms;
    const haproxyAddedP99Ms = h.p99Ms - d.p99Ms;
    out.push({
      round: i + 1,
      addedP50Ms: m.p50Ms - d.p50Ms,
      addedP99Ms,
      haproxyAddedP99Ms,
      met: addedP99Ms <= haproxyAddedP99Ms + 1,
    });
  });
  return out;
}

/** Closed-loop figures of one target: medians over rounds; ratios are per-round ratios' medians. */
export interface ClosedSummary {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerReq: number | null;
  rssIdleMiB: number | null;
  rssAfterMiB: number | null;
  xDirect: number;
  xHaproxy: number | null;
  xHttpProxy: number | null;
  cpuXHaproxy: number | null;
  rssXHaproxy: number | null;
  errors: number;
}

/** A target of the issue, checked. */
export interface Verdict {
  target: string;
  goal: string;
  measured: string;
  met: boolean | null;
}

export interface Summary {
  closed: Record<string, ClosedSummary>;
  verdicts: Verdict[];
}

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function ratioMedian(
  rounds: BenchResults['rounds'],
  key: string,
  ref: string,
  pick: (r: ClosedLoopResult & { cpuUsPerReq: number | null; rssAfterMiB: number | null }) => number | null,
): number | null {
  const xs: number[] = [];
  for (const round of rounds) {
    const a = round[key];
    const b = round[ref];
    if (a === undefined || b === undefined) continue;
    const va = pick(a);
    const vb = pick(b);
    if (va === null || vb === null || !(vb > 0)) continue;
    xs.push(va / vb);
  }
  return xs.length === 0 ? null : median(xs);
}

export function summarise(r: BenchResults): Summary {
  const closed: Record<string, ClosedSummary> = {};
  const keys = Object.keys(r.rounds[0] ?? {});
  for (const key of keys) {
    const rows = r.rounds.map((round) => round[key]!).filter((x) => x !== undefined);
    const cpu = rows.map((x) => x.cpuUsPerReq).filter((x): x is number => x !== null);
    const rss = rows.map((x) => x.rssAfterMiB).filter((x): x is number => x !== null);
    closed[key] = {
      rps: median(rows.map((x) => x.rps)),
      p50Ms: median(rows.map((x) => x.p50Ms)),
      p99Ms: median(rows.map((x) => x.p99Ms)),
      cpuUsPerReq: cpu.length === 0 ? null : median(cpu),
      rssIdleMiB: r.idleRss[key] ?? null,
      rssAfterMiB: rss.length === 0 ? null : Math.max(...rss),
      xDirect: ratioMedian(r.rounds, key, 'direct', (x) => x.rps) ?? Number.NaN,
      xHaproxy: ratioMedian(r.rounds, key, 'haproxy', (x) => x.rps),
      xHttpProxy: ratioMedian(r.rounds, key, 'http-proxy', (x) => x.rps),
      cpuXHaproxy: ratioMedian(r.rounds, key, 'haproxy', (x) => x.cpuUsPerReq),
      rssXHaproxy: ratioMedian(r.rounds, key, 'haproxy', (x) => x.rssAfterMiB),
      errors: rows.reduce((a, x) => a + x.errors, 0),
    };
  }
  return { closed, verdicts: verdicts(r, closed) };
}

const f1 = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(1);
const f2 = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(2);
const f3 = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(3);
const signed = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x)
    ? '–'
    : `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(3)}`;
const k = (x: number): string => (Number.isFinite(x) ? `${(x / 1000).toFixed(1)}k` : '–');
const times = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : `${x.toFixed(2)}×`;
const mib = (bytes: number): number => bytes / 1024 ** 2;

function verdicts(r: BenchResults, c: Record<string, ClosedSummary>): Verdict[] {
  const out: Verdict[] = [];
  const m = c.meshlet;
  const check = (
    target: string,
    goal: string,
    value: number | null,
    limit: number,
    atLeast: boolean,
    unit = '',
  ) => {
    if (value === null || !Number.isFinite(value)) {
      out.push({ target, goal, measured: 'not measured', met: null });
      return;
    }
    const met = atLeast ? value >= limit : value <= limit;
    const by = atLeast ? value / limit : limit === 0 ? Number.NaN : value / limit;
    out.push({
      target,
      goal,
      measured: `${f2(value)}${unit} (${met ? 'met' : 'missed'}; ${f2(by)}× the goal)`,
      met,
    });
  };
  check('req/s vs node-http-proxy', '≥ 2.0×', m?.xHttpProxy ?? null, 2.0, true, '×');
  check('req/s vs HAProxy', '≥ 0.25×', m?.xHaproxy ?? null, 0.25, true, '×');
  const direct = r.fixed.direct;
  const fm = r.fixed.meshlet;
  const fh = r.fixed.haproxy;
  const overloaded = direct !== undefined && direct.late > 0.01 * direct.sent;
  const before = out.length;
  const addedP50 = direct && fm ? fm.addedP50Ms : null;
  check('added p50 at 2,000 req/s', '≤ +0.4 ms', addedP50, 0.4, false, ' ms');
  if (direct && fm && fh) {
    const addedP99 = fm.addedP99Ms;
    const limit = fh.addedP99Ms + 1;
    const perRound = fixedPerRound(r);
    const k = perRound.filter((x) => x.met).length;
    out.push({
      target: 'added p99 at 2,000 req/s',
      goal: `≤ HAProxy's added p99 + 1 ms = ${signed(limit)} ms`,
      measured: `${signed(addedP99)} ms (${addedP99 <= limit ? 'met' : `missed by ${f3(addedP99 - limit)} ms`}); per round: ${k} of ${perRound.length} round${perRound.length === 1 ? '' : 's'} within HAProxy's + 1 ms`,
      met: addedP99 <= limit,
    });
  } else
    out.push({
      target: 'added p99 at 2,000 req/s',
      goal: "≤ HAProxy's + 1 ms",
      measured: 'not measured',
      met: null,
    });
  if (overloaded) {
    for (const v of out.slice(before)) {
      v.measured += ' — unreliable: the machine was overloaded during the fixed-rate phase';
      v.met = null;
    }
  }
  // The issue's idle figure is for the full config (Consul registry + mTLS); runs before 2026-12-03
  // measured the plain one only.
  const fullIdle = r.idleRss['meshlet-full'];
  if (fullIdle === undefined) {
    check('RSS idle', '≤ 60 MiB', m?.rssIdleMiB ?? null, 60, false, ' MiB');
    out[out.length - 1]!.measured += ' — plain config only (the full config was not measured)';
  } else {
    check('RSS idle, full config (Consul + mTLS)', '≤ 60 MiB', fullIdle, 60, false, ' MiB');
    out[out.length - 1]!.measured += `; plain config ${f2(m?.rssIdleMiB)} MiB`;
  }
  check('RSS after closed-loop load', '≤ 100 MiB', m?.rssAfterMiB ?? null, 100, false, ' MiB');
  const lm = r.large.meshlet;
  const lh = r.large.haproxy;
  check(
    '1 MiB responses vs HAProxy',
    '≥ 0.6×',
    lm && lh ? lm.bytesPerSec / lh.bytesPerSec : null,
    0.6,
    true,
    '×',
  );
  const plain2 = r.hops['meshlet-2hops'];
  const mtls2 = r.hops['meshlet-2hops-mtls'];
  check(
    'mTLS two hops vs plain two hops',
    '≥ 0.6×',
    plain2 && mtls2 ? mtls2.rps / plain2.rps : null,
    0.6,
    true,
    '×',
  );
  const micro = r.micro.results;
  if (micro.length === 0) {
    // Not run at all (--no-micro, or micro.ts failed): say so rather than blame the source tree.
    const why = `not measured (micro-benchmarks: ${r.micro.notes.join('; ') || 'no results'})`;
    out.push({ target: 'balancer pick', goal: '≥ 10 M ops/s', measured: why, met: null });
    out.push({ target: 'breaker decision', goal: '≥ 5 M ops/s', measured: why, met: null });
    return out;
  }
  const picks = micro.filter((x) => x.group === 'balancer' && !x.name.includes('avoid'));
  const rr = picks.find((x) => x.name === 'pick round_robin');
  if (rr !== undefined) {
    const slowest = picks.reduce((a, b) => (b.opsPerSec < a.opsPerSec ? b : a));
    check(
      'balancer pick (round_robin, the default)',
      '≥ 10 M ops/s',
      rr.opsPerSec / 1e6,
      10,
      true,
      ' M ops/s',
    );
    check(
      `balancer pick, slowest kind (${slowest.name})`,
      '≥ 10 M ops/s',
      slowest.opsPerSec / 1e6,
      10,
      true,
      ' M ops/s',
    );
  }
  const breaker = micro.find((x) => /breaker/i.test(x.name));
  if (breaker === undefined) {
    out.push({
      target: 'breaker decision',
      goal: '≥ 5 M ops/s',
      measured: 'no breaker in src/resilience/ yet',
      met: null,
    });
  } else
    check(`breaker decision (${breaker.name})`, '≥ 5 M ops/s', breaker.opsPerSec / 1e6, 5, true, ' M ops/s');
  return out;
}

export function renderMarkdown(r: BenchResults, s: Summary): string {
  const L: string[] = [];
  const mach = r.machine;
  const label = (key: string): string => r.labels[key] ?? key;
  L.push(`# meshlet bench — ${mach.date}${r.quick ? ' (--quick smoke run)' : ''}`);
  L.push('');
  L.push(
    `Machine: ${mach.cores} cores, ${mach.cpu}, ${mach.memoryGiB} GiB, ${mach.kernel}; Node ${mach.node}; meshlet ${mach.commit}; load average ${mach.loadAverage.join(' ')} at start, ${(mach.loadAverageEnd ?? []).join(' ')} at end.`,
  );
  L.push(
    `Tools: ${Object.entries(mach.tools)
      .map(([name, v]) => `${name} ${v ?? 'not installed'}`)
      .join('; ')}.`,
  );
  L.push(`Upstream: ${r.upstream}. Everything on 127.0.0.1, one process per proxy.`);
  L.push('');
  L.push(
    `## Closed loop: ${r.plan.tool} 1 thread, ${r.plan.connections} connections, ${r.plan.durationS} s × ${r.rounds.length} round(s), interleaved`,
  );
  L.push('');
  L.push(
    'Medians over rounds; each ratio is taken within a round, then the median of those. CPU = (utime + stime) of the proxy process over the run ÷ requests. RSS after load = largest right after a run.',
  );
  L.push('');
  L.push(
    '| target | req/s | × direct | × HAProxy | p50 ms | p99 ms | CPU µs/req | CPU × HAProxy | RSS idle MiB | RSS after load MiB | RSS × HAProxy |',
  );
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [key, c] of Object.entries(s.closed)) {
    L.push(
      `| ${label(key)} | ${k(c.rps)} | ${times(c.xDirect)} | ${times(c.xHaproxy)} | ${f2(c.p50Ms)} | ${f2(c.p99Ms)} | ${f1(c.cpuUsPerReq)} | ${times(c.cpuXHaproxy)} | ${f1(c.rssIdleMiB)} | ${f1(c.rssAfterMiB)} | ${times(c.rssXHaproxy)} |${c.errors > 0 ? ` ${c.errors} errors` : ''}`,
    );
  }
  L.push('');
  if (r.idleRss.meshlet !== undefined) {
    L.push(
      `Idle RSS: plain ${f1(r.idleRss.meshlet)} MiB, full (Consul registry + mTLS from the Connect CA) ${f1(r.idleRss['meshlet-full'])} MiB (2 s after start, before any load; the full config takes no part in the loads).`,
    );
    L.push('');
  }
  const semis = Object.keys(s.closed).filter((x) => x === 'meshlet' || x.startsWith('meshlet-semi'));
  if (semis.length > 1 && s.closed.meshlet !== undefined) {
    // The default's size, from its label (it changed from 1 to 2 MiB on 2026-12-01).
    const defaultMb = /semi-space (\d+) MiB/.exec(r.labels.meshlet ?? '')?.[1] ?? '?';
    const many = r.many;
    const n = many?.connections;
    L.push('### meshlet: V8 semi-space (young generation) size, throughput against memory');
    L.push('');
    L.push(
      `| \`MESHLET_SEMI_SPACE_MB\` | req/s | × default | CPU µs/req | RSS idle MiB | RSS after load MiB | RSS after 1 MiB responses |${
        many === undefined ? '' : ` req/s, ${n} conns | CPU µs/req, ${n} conns | RSS after ${n} conns MiB |`
      }`,
    );
    L.push(
      `| --- | ---: | ---: | ---: | ---: | ---: | ---: |${many === undefined ? '' : ' ---: | ---: | ---: |'}`,
    );
    const size = (key: string) => (key === 'meshlet' ? Number(defaultMb) : Number(key.slice(12)) || 1000);
    const order = semis.sort((a, b) => size(a) - size(b));
    for (const key of order) {
      const c = s.closed[key]!;
      const name =
        key === 'meshlet'
          ? `${defaultMb} (default)`
          : key === 'meshlet-semi0'
            ? "0 (Node's default)"
            : key.slice(12);
      const ratio = ratioMedian(r.rounds, key, 'meshlet', (x) => x.rps);
      const m = many?.rows[key];
      L.push(
        `| ${name} | ${k(c.rps)} | ${times(ratio)} | ${f1(c.cpuUsPerReq)} | ${f1(c.rssIdleMiB)} | ${f1(c.rssAfterMiB)} | ${f1(r.large[key]?.rssAfterMiB)} |${
          many === undefined
            ? ''
            : ` ${m === undefined ? '–' : k(m.rps)} | ${f1(m?.cpuUsPerReq)} | ${f1(m?.rssAfterMiB)} |`
        }`,
      );
    }
    if (many !== undefined) {
      const others = Object.keys(many.rows).filter((x) => !semis.includes(x));
      const line = others
        .map((x) => {
          const m = many.rows[x]!;
          return `${r.labels[x] ?? x}: ${k(m.rps)} req/s, ${f1(m.cpuUsPerReq)} µs CPU/req, RSS ${f1(m.rssAfterMiB)} MiB`;
        })
        .join('; ');
      L.push('');
      L.push(`At ${n} connections (one ${r.plan.durationS} s round), for scale: ${line}.`);
    }
    L.push('');
  }
  const d = r.fixed.direct;
  const h = r.fixed.haproxy;
  L.push(
    `## Fixed rate: ${r.plan.rate} req/s, open loop (bench/open-loop.ts), ${r.plan.rateS} s each × ${r.fixedRounds.length} round(s), interleaved`,
  );
  L.push('');
  L.push(
    'Latency from send to the end of the body; medians over rounds. Added = this row − direct in the same round, then the median. Errors and late sends (> 5 ms behind schedule: the generator itself was starved) are summed.',
  );
  L.push('');
  if (d !== undefined && d.late > 0.01 * d.sent) {
    L.push(
      `**Warning:** the generator itself sent ${((100 * d.late) / d.sent).toFixed(1)} % of the direct row's requests more than 5 ms late: the machine was overloaded during this phase (other processes), so these latencies mostly measure CPU contention, not the proxies.`,
    );
    L.push('');
  }
  L.push(
    "| target | p50 ms | p90 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | added p99 × HAProxy's | errors | late sends |",
  );
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [key, x] of Object.entries(r.fixed)) {
    const ap50 = d ? x.addedP50Ms : null;
    const ap99 = d ? x.addedP99Ms : null;
    const hp99 = d && h ? h.addedP99Ms : null;
    const rel = ap99 !== null && hp99 !== null && hp99 > 0 && key !== 'direct' ? ap99 / hp99 : null;
    L.push(
      `| ${label(key)} | ${f3(x.p50Ms)} | ${f3(x.p90Ms)} | ${f3(x.p99Ms)} | ${f3(x.p999Ms)} | ${signed(ap50)} | ${signed(ap99)} | ${times(rel)} | ${x.errors} | ${x.late} |`,
    );
  }
  L.push('');
  const perRound = fixedPerRound(r);
  if (perRound.length > 0) {
    const met = perRound.filter((x) => x.met).length;
    L.push(
      `Per round (added = row − direct in that round): meshlet's added p99 ≤ HAProxy's added p99 + 1 ms in **${met} of ${perRound.length} round${perRound.length === 1 ? '' : 's'}**.`,
    );
    L.push('');
    L.push(
      '| round | meshlet added p50 ms | meshlet added p99 ms | HAProxy added p99 ms | meshlet − HAProxy, p99 ms | within + 1 ms |',
    );
    L.push('| ---: | ---: | ---: | ---: | ---: | --- |');
    for (const x of perRound)
      L.push(
        `| ${x.round} | ${signed(x.addedP50Ms)} | ${signed(x.addedP99Ms)} | ${signed(x.haproxyAddedP99Ms)} | ${signed(x.addedP99Ms - x.haproxyAddedP99Ms)} | ${x.met ? 'yes' : 'no'} |`,
      );
    L.push('');
  }
  const ld = r.large.direct;
  const lh = r.large.haproxy;
  L.push(
    `## 1 MiB responses: ${r.plan.tool} 1 thread, ${r.plan.connections} connections, ${r.plan.largeS} s each`,
  );
  L.push('');
  L.push('| target | MiB/s | × direct | × HAProxy | RSS right after MiB |');
  L.push('| --- | ---: | ---: | ---: | ---: |');
  for (const [key, x] of Object.entries(r.large)) {
    L.push(
      `| ${label(key)} | ${f1(mib(x.bytesPerSec))} | ${times(ld ? x.bytesPerSec / ld.bytesPerSec : null)} | ${times(lh ? x.bytesPerSec / lh.bytesPerSec : null)} | ${f1(x.rssAfterMiB)} |${x.errors > 0 ? ` ${x.errors} errors` : ''}`,
    );
  }
  L.push('');
  const one = r.hops.meshlet;
  L.push(`## Two hops (meshlet → meshlet → app, plain HTTP and mTLS), ${r.plan.hopS} s each`);
  L.push('');
  L.push('| path | req/s | × one meshlet | p50 ms | p99 ms | CPU µs/req (all meshlets) |');
  L.push('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const [key, x] of Object.entries(r.hops)) {
    L.push(
      `| ${label(key)} | ${k(x.rps)} | ${times(one ? x.rps / one.rps : null)} | ${f2(x.p50Ms)} | ${f2(x.p99Ms)} | ${f1(x.cpuUsPerReq)} |`,
    );
  }
  L.push('');
  if (r.grpc !== undefined) L.push(...renderGrpc(r.grpc));
  if (r.gateway !== undefined) L.push(...renderGateway(r.gateway), '');
  L.push('## Micro-benchmarks (tinybench, batches of 1,000 calls)');
  L.push('');
  if (r.micro.results.length > 0) {
    L.push('| group | benchmark | M ops/s | ± % |');
    L.push('| --- | --- | ---: | ---: |');
    for (const x of r.micro.results)
      L.push(`| ${x.group} | ${x.name} | ${millions(x.opsPerSec)} | ${f1(x.rme)} |`);
    L.push('');
  }
  for (const n of r.micro.notes) L.push(`- ${n}`);
  L.push('');
  L.push('## Targets (issue 6)');
  L.push('');
  L.push('| target | goal | measured | |');
  L.push('| --- | --- | --- | --- |');
  for (const v of s.verdicts) {
    L.push(
      `| ${v.target} | ${v.goal} | ${v.measured} | ${v.met === null ? '–' : v.met ? 'met' : '**missed**'} |`,
    );
  }
  L.push('');
  // Context, not a target: what meshlet's policies cost over the floor of any Node proxy.
  const floor = ratioMedian(r.rounds, 'meshlet', 'undici-proxy', (x) => x.rps);
  const floorCpu = ratioMedian(r.rounds, 'meshlet', 'undici-proxy', (x) => x.cpuUsPerReq);
  if (floor !== null) {
    L.push(
      `meshlet with its defaults runs at ${times(floor)} the req/s of the bare undici proxy (node:http → undici, no policies, Node's default GC), at ${times(floorCpu)} its CPU per request.`,
    );
    L.push('');
  }
  if (r.skipped.length > 0 || r.notes.length > 0) {
    L.push('## Skipped and notes');
    L.push('');
    for (const x of r.skipped) L.push(`- ${x.target}: ${x.reason}`);
    for (const n of r.notes) L.push(`- ${n}`);
    L.push('');
  }
  return L.join('\n');
}

/** Replaces the text between the latest-results markers of a README with a run's report. */
export function updateReadme(file: string, md: string): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return;
  }
  const begin = '<!-- latest-results:begin -->';
  const end = '<!-- latest-results:end -->';
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a === -1 || b === -1) return;
  const body = md.replace(/^# .*\n/, '').replace(/^## /gm, '#### ');
  writeFileSync(file, `${text.slice(0, a + begin.length)}\n${body}\n${text.slice(b)}`);
}
