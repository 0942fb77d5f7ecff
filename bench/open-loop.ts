// A tiny open-loop (fixed-rate) HTTP load generator: sends on schedule whatever the responses do.
//
// wrk cannot hold a fixed rate, so the "added latency at 2,000 req/s" figures come from here.
// Every millisecond it sends the requests whose scheduled time has passed (request i is due at
// start + i / rate), over an undici pool of keep-alive connections, and records each latency from
// the moment it was sent to the end of its body, in µs. First a warm-up at the same rate (default
// 1 s, not recorded). Bounded: exactly rate × (warmup + duration) requests, then at most 10 s to
// drain. Prints one JSON object (see FixedRateResult in lib/load.ts).
//
//   node bench/open-loop.ts --port 8080 --rate 2000 --duration 10 [--warmup 1] [--connections 64] [--path /]
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    rate: { type: 'string', default: '2000' },
    duration: { type: 'string', default: '10' },
    /** Seconds at the full rate before the measured window, not recorded. */
    warmup: { type: 'string', default: '1' },
    connections: { type: 'string', default: '64' },
    path: { type: 'string', default: '/' },
  },
});
const port = Number(values.port);
const rate = Number(values.rate);
const durationS = Number(values.duration);
if (!(port > 0 && rate > 0 && durationS > 0)) {
  process.stderr.write('usage: open-loop.ts --port N --rate R --duration S [--connections C] [--path P]\n');
  process.exit(2);
}
const total = Math.round(rate * durationS);
const pool = new Pool(`http://127.0.0.1:${port}`, {
  connections: Number(values.connections),
  pipelining: 1,
  keepAliveTimeout: 30_000,
});
const latenciesUs = new Float64Array(total);
let sent = 0;
let completed = 0;
let errors = 0;
let late = 0;

function send(): void {
  const at = performance.now();
  pool.request({ path: values.path, method: 'GET' }).then(
    async ({ statusCode, body }) => {
      await body.dump();
      if (statusCode >= 400) errors++;
      else latenciesUs[completed++] = (performance.now() - at) * 1000;
    },
    () => {
      errors++;
    },
  );
}

/** Sends `count` requests at `rate`, each through `fire`; resolves when the last one is sent. */
function schedule(count: number, fire: (lateMs: number) => void): Promise<void> {
  const start = performance.now();
  let n = 0;
  return new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      const due = Math.min(count, Math.floor(((now - start) * rate) / 1000));
      while (n < due) {
        fire(now - (start + (n * 1000) / rate));
        n++;
      }
      if (n >= count) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
}

// Warm the connections, then this generator's own code at the full rate (not recorded): a cold
// generator is late on its first requests and measures its own JIT, not the target.
await Promise.all(
  Array.from({ length: Math.min(Number(values.connections), 16) }, () =>
    pool.request({ path: values.path, method: 'GET' }).then(({ body }) => body.dump()),
  ),
);
const warm: Promise<void>[] = [];
await schedule(Math.round(rate * Number(values.warmup)), () => {
  warm.push(
    pool.request({ path: values.path, method: 'GET' }).then(
      ({ body }) => body.dump(),
      () => {},
    ),
  );
});
await Promise.all(warm);
// A full collection now (run with --expose-gc), so the warm-up's garbage is not collected, with a
// pause of 10-15 ms, inside the measured window.
(globalThis as { gc?: () => void }).gc?.();

await schedule(total, (lateMs) => {
  if (lateMs > 5) late++;
  sent++;
  send();
});
const drainUntil = performance.now() + 10_000;
while (completed + errors < sent && performance.now() < drainUntil) {
  await new Promise((r) => setTimeout(r, 10));
}
const sorted = latenciesUs.slice(0, completed).sort();
const q = (p: number): number =>
  completed === 0 ? Number.NaN : sorted[Math.min(completed - 1, Math.floor(p * completed))]! / 1000;
process.stdout.write(
  `${JSON.stringify({
    rate,
    sent,
    completed,
    errors,
    late,
    p50Ms: q(0.5),
    p90Ms: q(0.9),
    p99Ms: q(0.99),
    p999Ms: q(0.999),
    maxMs: completed === 0 ? Number.NaN : sorted[completed - 1]! / 1000,
  })}\n`,
);
await pool.destroy();
process.exit(0);
