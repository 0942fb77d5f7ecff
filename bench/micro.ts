// Micro-benchmarks of the request path's policies with tinybench: balancer pick, route match,
// header rewriting, access-log fields, and whatever resilience policies src/resilience/ holds when it runs.
//
// Each task runs a batch of BATCH calls per sample so that the timer's own cost (~50 ns) does not
// swamp operations of ~10–100 ns; ops/s = batches/s × BATCH.
//
//   node bench/micro.ts [--quick] [--json]
import { readdirSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { millions } from './lib/ops-format.ts';
import { createBalancer } from '../src/balancer/create-balancer.ts';
import type { LoadBalancerKind } from '../src/balancer/load-balancer.ts';
import { type RouteSpec, upstreamSpec } from '../src/config/schema.ts';
import { forwardRequestHeaders, forwardResponseHeaders } from '../src/proxy/headers.ts';
import { Router } from '../src/route/router.ts';
import { redactQuery } from '../src/telemetry/access-log.ts';
import { boundedJson, MAX_PATH_BYTES } from '../src/telemetry/access-log-fields.ts';
import { Metrics } from '../src/telemetry/metrics.ts';
import { EndpointHandle, makeEndpoint } from '../src/upstream/endpoint.ts';
import { UpstreamTable } from '../src/upstream/upstream-table.ts';

/** One micro-benchmark's figure. */
export interface MicroResult {
  group: string;
  name: string;
  opsPerSec: number;
  /** Relative margin of error of the mean, %. */
  rme: number;
}

/** Calls per tinybench sample. */
const BATCH = 1000;

const { values } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
});

const bench = new Bench({
  time: values.quick ? 150 : 600,
  warmupTime: values.quick ? 50 : 200,
});
const groups = new Map<string, string>();
const notes: string[] = [];
/** Keeps results alive so V8 cannot drop the work. */
let sink: unknown;
/** Stops timers the policies started, so the process can exit. */
const cleanups: (() => void)[] = [];

function add(group: string, name: string, op: () => unknown): void {
  groups.set(name, group);
  bench.add(name, () => {
    let last: unknown;
    for (let i = 0; i < BATCH; i++) last = op();
    sink = last;
  });
}

// --- balancers: pick over 10 endpoints (none ejected), and pick avoiding the previous one (a retry).
const handles = Array.from({ length: 10 }, (_, i) => {
  const h = new EndpointHandle(makeEndpoint('10.0.0.1', 8000 + i, { weight: 1 + (i % 3) }));
  h.ewmaMs = 5 + i;
  return h;
});
const KINDS: LoadBalancerKind[] = [
  'round_robin',
  'random',
  'least_request',
  'weighted',
  'ring_hash',
  'maglev',
  'peak_ewma',
];
const keys = Array.from({ length: 64 }, (_, i) => `user-${i * 7919}`);
for (const kind of KINDS) {
  const lb = createBalancer(kind, { ringHash: { minimumRingSize: 1024 } });
  lb.update(handles);
  const hashing = kind === 'ring_hash' || kind === 'maglev';
  let k = 0;
  add('balancer', `pick ${kind}${hashing ? ' (hash key)' : ''}`, () =>
    lb.pick(hashing ? keys[k++ & 63] : undefined, undefined),
  );
  add('balancer', `pick ${kind}, avoid previous`, () => lb.pick(undefined, handles[3]));
}

// --- route match: the default route (Host names the upstream), and the last of 10 prefix routes.
// The upstream table is built from src/ as it is now; if it cannot be (src/ mid-change), say so.
try {
  const metrics = new Metrics({ processMetrics: false });
  const names = Array.from({ length: 10 }, (_, i) => `svc-${i}`);
  const table = new UpstreamTable(metrics, {}, upstreamSpec.parse({}));
  for (const n of names) table.ensure(n);
  const emptyRouter = new Router([], table);
  const routes: RouteSpec[] = names.map((n, i) => ({
    match: { pathPrefix: `/api/v${i}/`, headers: [] },
    upstream: n,
    stripPrefix: i % 2 === 0,
    normalizePath: true,
  }));
  const routedRouter = new Router(routes, table);
  const reqHeaders = { host: 'svc-3', accept: '*/*' };
  add('route', 'resolve by Host (no routes)', () => emptyRouter.resolve('svc-3', '/users/42', reqHeaders));
  add('route', 'resolve, last of 10 prefix routes', () =>
    routedRouter.resolve('svc-3:80', '/api/v9/users/42', reqHeaders),
  );
} catch (err) {
  notes.push(`route match not benchmarked: ${(err as Error).message.split('\n')[0]}`);
}

// --- header rewriting: a typical request (8 headers) and response (5 headers).
const raw = [
  'Host',
  'svc-3',
  'User-Agent',
  'curl/8.5.0',
  'Accept',
  '*/*',
  'Accept-Encoding',
  'gzip, deflate',
  'Connection',
  'keep-alive',
  'traceparent',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  'X-Request-Id',
  '7c3d9c1e-1f0b-4a53-9a57-1c3b1b6f1d2e',
  'Content-Type',
  'application/json',
];
const fakeReq = {
  rawHeaders: raw,
  headers: { connection: 'keep-alive' },
  socket: { remoteAddress: '127.0.0.1' },
} as unknown as IncomingMessage;
const fakeReqNoId = {
  rawHeaders: raw.slice(0, 12),
  headers: { connection: 'keep-alive' },
  socket: { remoteAddress: '127.0.0.1' },
} as unknown as IncomingMessage;
const respHeaders = {
  'content-type': 'text/plain',
  'content-length': '100',
  date: 'Sun, 22 Nov 2026 10:00:00 GMT',
  server: 'nginx',
  connection: 'keep-alive',
};
add('headers', 'forwardRequestHeaders (8 headers, has x-request-id)', () =>
  forwardRequestHeaders(fakeReq, 'http'),
);
add('headers', 'forwardRequestHeaders (6 headers, new x-request-id)', () =>
  forwardRequestHeaders(fakeReqNoId, 'http'),
);
add('headers', 'forwardResponseHeaders (5 headers)', () => forwardResponseHeaders(respHeaders, 'abc', 200));

// --- resilience: what src/resilience/ exports right now (it is being written concurrently).
type Module = Record<string, unknown>;
type Ctor = new (...args: unknown[]) => Record<string, unknown>;
let now = 0;
const clock = { now: () => now };
const resilienceDir = new URL('../src/resilience/', import.meta.url);
const modules: [string, Module][] = [];
function walk(dir: URL, prefix: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...walk(new URL(`${e.name}/`, dir), `${prefix}${e.name}/`));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(`${prefix}${e.name}`);
  }
  return out;
}
let files: string[] = [];
try {
  files = walk(resilienceDir, '');
} catch {
  notes.push('src/resilience/ not found: no resilience micro-benchmarks');
}
for (const file of files) {
  try {
    modules.push([file, (await import(new URL(file, resilienceDir).href)) as Module]);
  } catch (err) {
    notes.push(`src/resilience/${file} did not load (${(err as Error).message.split('\n')[0]})`);
  }
}
const exported = new Map<string, unknown>();
for (const [, mod] of modules) for (const [k, v] of Object.entries(mod)) exported.set(k, v);
const covered = new Set<string>();

/** Calls `method` on `obj` if it is a function; returns whether it was. */
function has(obj: Record<string, unknown>, method: string): boolean {
  return typeof obj[method] === 'function';
}

const Backoff = exported.get('ExponentialBackoff') as Ctor | undefined;
if (Backoff !== undefined) {
  covered.add('ExponentialBackoff');
  const b = new Backoff({}) as { delay(n: number): number };
  let n = 0;
  add('resilience', 'backoff delay (ExponentialBackoff.delay)', () => b.delay((n++ & 3) + 1));
}
const Budget = exported.get('RetryBudget') as Ctor | undefined;
if (Budget !== undefined) {
  covered.add('RetryBudget');
  const b = new Budget({ clock }) as { onRequest(): void; tryRetry(): boolean };
  let i = 0;
  add('resilience', 'retry budget: onRequest + tryRetry every 10th (RetryBudget)', () => {
    now += 0.01;
    b.onRequest();
    return (i++ & 7) === 0 ? b.tryRetry() : false;
  });
}
const shouldRetry = exported.get('shouldRetry') as ((ctx: unknown) => unknown) | undefined;
const defaultRetryOn = exported.get('DEFAULT_RETRY_ON');
if (shouldRetry !== undefined && defaultRetryOn !== undefined) {
  covered.add('shouldRetry');
  const ctx = {
    outcome: { kind: 'response', status: 503 },
    method: 'GET',
    hasIdempotencyKey: false,
    requestSent: true,
    responseStarted: false,
    bodyReplayable: true,
    attempt: 1,
    maxAttempts: 3,
    retryOn: defaultRetryOn,
  };
  add('resilience', 'retry decision, 503 on GET (shouldRetry)', () => shouldRetry(ctx));
}

// The breaker's decision: admit, then settle the outcome (synchronous; opossum only holds the state).
const Breaker = exported.get('UpstreamBreaker') as Ctor | undefined;
if (Breaker !== undefined) {
  covered.add('UpstreamBreaker');
  try {
    const b = new Breaker(
      { errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeout: 30_000, rollingWindow: 10_000 },
      () => {},
    ) as { admit(): 0 | 1 | 2; settle(a: 0 | 1 | 2, ok: boolean): void; shutdown(): void };
    add('resilience', 'breaker decision: admit + settle (UpstreamBreaker)', () => b.settle(b.admit(), true));
    cleanups.push(() => b.shutdown());
  } catch (err) {
    notes.push(`UpstreamBreaker not benchmarked: ${(err as Error).message}`);
  }
}
const Limit = exported.get('ConcurrencyLimit') as Ctor | undefined;
if (Limit !== undefined) {
  covered.add('ConcurrencyLimit');
  const l = new Limit({}) as { tryAcquireRequest(): boolean; releaseRequest(): void };
  add('resilience', 'concurrency limit: tryAcquireRequest + releaseRequest (ConcurrencyLimit)', () => {
    const ok = l.tryAcquireRequest();
    if (ok) l.releaseRequest();
    return ok;
  });
}
const Bucket = exported.get('TokenBucket') as Ctor | undefined;
if (Bucket !== undefined) {
  covered.add('TokenBucket');
  const b = new Bucket({ ratePerSecond: 1e9, clock }) as { tryTake(): boolean };
  add('resilience', 'token bucket: tryTake (TokenBucket)', () => {
    now += 0.001;
    return b.tryTake();
  });
}
const Keyed = exported.get('KeyedTokenBuckets') as Ctor | undefined;
if (Keyed !== undefined) {
  covered.add('KeyedTokenBuckets');
  const b = new Keyed({ ratePerSecond: 1e9, clock }) as { tryTake(key: string): boolean };
  let i = 0;
  add('resilience', 'keyed token buckets: tryTake of 64 keys (KeyedTokenBuckets)', () => {
    now += 0.001;
    return b.tryTake(keys[i++ & 63]!);
  });
}
const Outlier = exported.get('OutlierDetector') as Ctor | undefined;
if (Outlier !== undefined) {
  covered.add('OutlierDetector');
  try {
    const d = new Outlier({ clock }) as {
      update(all: readonly EndpointHandle[]): void;
      onSuccess(h: EndpointHandle): void;
      onFailure(h: EndpointHandle, kind: string): boolean;
    };
    d.update(handles);
    let i = 0;
    add('resilience', 'outlier detector: onSuccess, onFailure(5xx) every 16th (OutlierDetector)', () => {
      const h = handles[i & 7]!;
      if ((i++ & 15) === 0) return d.onFailure(h, '5xx');
      d.onSuccess(h);
      return true;
    });
  } catch (err) {
    notes.push(`OutlierDetector not benchmarked: ${(err as Error).message}`);
  }
}

// Anything else that looks like a policy: probe the usual method names.
const DECIDE = [
  'allow',
  'tryAcquire',
  'canRequest',
  'isAllowed',
  'decide',
  'acquire',
  'admit',
  'check',
  'permit',
];
const SUCCEED = ['onSuccess', 'success', 'recordSuccess', 'reportSuccess', 'record'];
const FAIL = ['onFailure', 'failure', 'recordFailure', 'reportFailure'];
for (const [name, value] of exported) {
  if (typeof value !== 'function' || !/^[A-Z]/.test(name) || covered.has(name)) continue;
  if (!/Breaker|Outlier|Limit|Bucket|Detector/.test(name)) continue;
  let obj: Record<string, unknown>;
  try {
    obj = new (value as Ctor)({ clock });
  } catch {
    try {
      obj = new (value as Ctor)();
    } catch (err) {
      notes.push(`${name}: could not construct for a micro-benchmark (${(err as Error).message})`);
      continue;
    }
  }
  const decide = DECIDE.find((m) => has(obj, m));
  const succeed = SUCCEED.find((m) => has(obj, m));
  const fail = FAIL.find((m) => has(obj, m));
  const call = (m: string, ...a: unknown[]): unknown => (obj[m] as (...x: unknown[]) => unknown)(...a);
  const arg = /Outlier|Detector/.test(name) ? [handles[0]] : [];
  try {
    if (decide !== undefined) call(decide, ...arg);
    if (succeed !== undefined) call(succeed, ...arg);
  } catch (err) {
    notes.push(`${name}: probe call failed (${(err as Error).message})`);
    continue;
  }
  covered.add(name);
  let i = 0;
  const label = `${name}: ${decide ?? '–'}${succeed === undefined ? '' : ` + ${succeed}`}${fail === undefined ? '' : ` (${fail} every 16th)`}`;
  add('resilience', label, () => {
    const r = decide === undefined ? undefined : call(decide, ...arg);
    if (fail !== undefined && (i++ & 15) === 0) call(fail, ...arg);
    else if (succeed !== undefined) call(succeed, ...arg);
    return r;
  });
}
const uncovered = [...exported]
  .filter(([k, v]) => typeof v === 'function' && /^[A-Z]/.test(k) && !covered.has(k))
  .map(([k]) => k);
if (uncovered.length > 0) notes.push(`resilience exports not benchmarked: ${uncovered.join(', ')}`);
if (modules.length > 0) notes.push(`resilience modules found: ${modules.map(([f]) => f).join(', ')}`);

// --- access-log fields: credential redaction and the bounded JSON of a caller's path. The hostile
// query (20,000 empty parameters, 40 KB) shows both stay one pass: ops/s × length should be of the
// order of the short path's, where a quadratic scan would be thousands of times slower.
const SHORT_PATH = '/api/v1/users/42?page=3&pageToken=abc';
const HOSTILE_QUERY = `/a?${'x&'.repeat(20_000)}token=1`;
add('access log', 'redactQuery: short path', () => redactQuery(SHORT_PATH));
add('access log', 'redactQuery: 40 KB hostile query', () => redactQuery(HOSTILE_QUERY));
add('access log', 'boundedJson: 40 KB path cut to 4 KiB', () => boundedJson(HOSTILE_QUERY, MAX_PATH_BYTES));

await bench.run();
for (const c of cleanups) c();
const results: MicroResult[] = bench.tasks.map((t) => {
  const r = t.result;
  const ok = r.state === 'completed' || r.state === 'aborted-with-statistics';
  return {
    group: groups.get(t.name) ?? '',
    name: t.name,
    opsPerSec: ok ? r.throughput.mean * BATCH : Number.NaN,
    rme: ok ? r.throughput.rme : Number.NaN,
  };
});
void sink;
if (values.json) process.stdout.write(`${JSON.stringify({ results, notes })}\n`);
else {
  for (const r of results) {
    process.stdout.write(
      `${r.group.padEnd(11)} ${r.name.padEnd(64)} ${millions(r.opsPerSec).padStart(8)} M ops/s ±${r.rme.toFixed(1)}%\n`,
    );
  }
  for (const n of notes) process.stdout.write(`note: ${n}\n`);
}
