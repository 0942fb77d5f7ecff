// Load generators: closed loop with wrk (else autocannon), fixed rate with bench/open-loop.ts.
import { fileURLToPath } from 'node:url';
import { runBounded, TASKSET, which } from './proc.ts';

/** What one closed-loop run measured. */
export interface ClosedLoopResult {
  tool: 'wrk' | 'autocannon';
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Response bytes per second (headers and body), as the tool reports it. */
  bytesPerSec: number;
  /** Socket errors, timeouts and non-2xx/3xx responses. */
  errors: number;
}

/** Options of {@link closedLoop}. */
export interface ClosedLoopOptions {
  connections: number;
  durationS: number;
  /** Request path; default `/`. */
  path?: string;
  /** Request headers, `name: value` each (the gateway phase sends a bearer token). */
  headers?: readonly string[];
}

const WRK = which('wrk');
const AUTOCANNON = fileURLToPath(new URL('../../node_modules/autocannon/autocannon.js', import.meta.url));

/** The closed-loop tool this machine has. */
export const closedLoopTool: 'wrk' | 'autocannon' = WRK !== null ? 'wrk' : 'autocannon';

/** wrk durations such as `812.00us`, `1.20ms`, `2.00s` → ms. */
function wrkMs(value: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(value);
  if (m === null) return Number.NaN;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'us':
      return n / 1000;
    case 'ms':
      return n;
    case 's':
      return n * 1000;
    default:
      return n * 60_000;
  }
}

/** wrk sizes such as `12.34MB` (binary multiples) → bytes. */
function wrkBytes(value: string): number {
  const m = /^([\d.]+)(B|KB|MB|GB|TB)$/.exec(value);
  if (m === null) return Number.NaN;
  const scale = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[m[2] as 'B'];
  return Number(m[1]) * scale;
}

/** Parses `wrk --latency` output. */
export function parseWrk(out: string): Omit<ClosedLoopResult, 'tool'> {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    return m === null ? Number.NaN : Number(m[1]);
  };
  const requestsLine = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out);
  const requests = requestsLine === null ? Number.NaN : Number(requestsLine[1]);
  const seconds = requestsLine === null ? Number.NaN : wrkMs(`${requestsLine[2]}${requestsLine[3]}`) / 1000;
  const p50 = /\n\s+50%\s+(\S+)/.exec(out);
  const p99 = /\n\s+99%\s+(\S+)/.exec(out);
  const transfer = /Transfer\/sec:\s+(\S+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const sockErrors = sock === null ? 0 : sock.slice(1).reduce((a, b) => a + Number(b), 0);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requests,
    seconds,
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: p50 === null ? Number.NaN : wrkMs(p50[1]!),
    p99Ms: p99 === null ? Number.NaN : wrkMs(p99[1]!),
    bytesPerSec: transfer === null ? Number.NaN : wrkBytes(transfer[1]!),
    errors: sockErrors + (non2xx === null ? 0 : Number(non2xx[1])),
  };
}

/** One closed-loop run (1 thread, N connections, fixed duration) against `http://127.0.0.1:port`. */
export async function closedLoop(port: number, options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const url = `http://127.0.0.1:${port}${options.path ?? '/'}`;
  const limitMs = (options.durationS + 20) * 1000;
  if (WRK !== null) {
    const args = [
      '-t1',
      `-c${options.connections}`,
      `-d${options.durationS}s`,
      '--timeout',
      '5s',
      '--latency',
    ];
    for (const h of options.headers ?? []) args.push('-H', h);
    const r = await runBounded(WRK, [...args, url], limitMs);
    if (r.code !== 0) throw new Error(`wrk failed (${r.code}): ${r.stderr || r.stdout}`);
    return { tool: 'wrk', ...parseWrk(r.stdout) };
  }
  const args = [AUTOCANNON, '-c', String(options.connections), '-d', String(options.durationS), '-j'];
  for (const h of options.headers ?? []) args.push('-H', h.replace(/: /, '='));
  args.push(url);
  const r = await runBounded(process.execPath, args, limitMs);
  if (r.code !== 0) throw new Error(`autocannon failed (${r.code}): ${r.stderr}`);
  const j = JSON.parse(r.stdout) as {
    requests: { total: number; average: number };
    latency: { p50: number; p99: number };
    throughput: { average: number };
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
  };
  return {
    tool: 'autocannon',
    requests: j.requests.total,
    seconds: j.duration,
    rps: j.requests.total / j.duration,
    p50Ms: j.latency.p50,
    p99Ms: j.latency.p99,
    bytesPerSec: j.throughput.average,
    errors: j.errors + j.timeouts + j.non2xx,
  };
}

/** What one fixed-rate run measured (latency from the moment each request was sent). */
export interface FixedRateResult {
  rate: number;
  sent: number;
  completed: number;
  errors: number;
  /** Requests sent more than 5 ms after their scheduled time (the generator fell behind). */
  late: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

const OPEN_LOOP = fileURLToPath(new URL('../open-loop.ts', import.meta.url));

/**
 * A fixed-rate (open-loop) run against `http://127.0.0.1:port/` with bench/open-loop.ts.
 * @param cpus when set (and taskset exists), the generator runs pinned to these CPUs.
 */
export async function fixedRate(
  port: number,
  rate: number,
  durationS: number,
  connections = 64,
  cpus?: string,
): Promise<FixedRateResult> {
  // A small young generation and a full collection before the measured window (--expose-gc), so
  // what little the generator allocates (open-loop.ts speaks HTTP/1.1 on raw sockets for this
  // reason) is collected in short pauses. --single-threaded: pinned to one CPU, V8's background
  // threads (concurrent marking, compiling) took that CPU from the sending thread for 13-20 ms a few
  // times per run; each stall then arrived at the target as a burst of 30-40 requests, which
  // measured the target's burst handling instead of its added latency (gaps > 10 ms between
  // consecutive sends: 3-4 per 6 s run before, none after).
  const args = [
    '--expose-gc',
    '--max-semi-space-size=1',
    '--single-threaded',
    OPEN_LOOP,
    '--port',
    String(port),
    '--rate',
    String(rate),
    '--duration',
    String(durationS),
    '--connections',
    String(connections),
  ];
  const r =
    cpus !== undefined && TASKSET !== null
      ? await runBounded(TASKSET, ['-c', cpus, process.execPath, ...args], (durationS + 20) * 1000)
      : await runBounded(process.execPath, args, (durationS + 20) * 1000);
  if (r.code !== 0) throw new Error(`open-loop failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as FixedRateResult;
}
