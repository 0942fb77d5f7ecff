// Load generators of the gRPC phase, each bounded in time; prints one JSON object.
//
//   --mode rate:  unary calls at a fixed rate (open loop) over one node:http2 session (what a gRPC
//                 channel is): call i is sent at start + i / rate (checked every millisecond), with
//                 the prepared request frame, and its latency runs from the send to the end of the
//                 stream; a call counts only with HTTP 200 and grpc-status 0 (in the trailers or in a
//                 trailers-only answer). h2load --rps sends in bursts of ~10 every 10 ms, which would
//                 measure burst handling, hence this generator. First 1 s at the same rate, not recorded.
//   --mode unary: the same calls in a closed loop (`--concurrency` in flight over `--connections`
//                 sessions): the fallback for calls/s when h2load is not installed.
//   --mode bidi:  one Echo/Bidi stream through grpc-js: writes the request message as fast as the
//                 stream takes it (write() false → wait for 'drain'; at most `--window` messages
//                 unanswered), counts replies for `--duration` s after a 1 s warm-up.
//
//   node bench/grpc-load.ts --port P --mode rate --rate 1000 --duration 5
//   node bench/grpc-load.ts --port P --mode unary --concurrency 32 --connections 4 --duration 5
//   node bench/grpc-load.ts --port P --mode bidi --duration 5 [--window 1024]
import http2 from 'node:http2';
import { parseArgs } from 'node:util';
import { type EchoReply, echoClient, grpc, REQUEST, requestFrame, UNARY_PATH } from './lib/grpc-echo.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    mode: { type: 'string', default: 'rate' },
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '32' },
    connections: { type: 'string', default: '1' },
    window: { type: 'string', default: '1024' },
  },
});
const port = Number(values.port);
const durationS = Number(values.duration);
const warmupS = Number(values.warmup);
if (!(port > 0 && durationS > 0)) {
  process.stderr.write('usage: grpc-load.ts --port N --mode rate|unary|bidi --duration S [...]\n');
  process.exit(2);
}
const FRAME = requestFrame();
const HEADERS = {
  ':method': 'POST',
  ':path': UNARY_PATH,
  'content-type': 'application/grpc',
  te: 'trailers',
};

function quantiles(latenciesUs: Float64Array, n: number) {
  const sorted = latenciesUs.slice(0, n).sort();
  const q = (p: number): number =>
    n === 0 ? Number.NaN : sorted[Math.min(n - 1, Math.floor(p * n))]! / 1000;
  return {
    p50Ms: q(0.5),
    p90Ms: q(0.9),
    p99Ms: q(0.99),
    p999Ms: q(0.999),
    maxMs: n === 0 ? Number.NaN : sorted[n - 1]! / 1000,
  };
}

function connect(): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

let firstError: string | null = null;
function noteError(why: string): void {
  firstError ??= why;
}

/** One unary call on `session`; resolves with its latency in µs, or null when it failed. */
function call(session: http2.ClientHttp2Session): Promise<number | null> {
  const at = performance.now();
  return new Promise((resolve) => {
    let status = 0;
    let grpcStatus: string | undefined;
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      resolve(ok ? (performance.now() - at) * 1000 : null);
    };
    const req = session.request(HEADERS);
    req.on('response', (h) => {
      status = Number(h[':status']);
      if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']);
    });
    req.on('trailers', (t) => {
      if (t['grpc-status'] !== undefined) grpcStatus = String(t['grpc-status']);
    });
    req.on('data', () => {});
    req.on('end', () => {
      const ok = status === 200 && grpcStatus === '0';
      if (!ok) noteError(`HTTP ${status}, grpc-status ${grpcStatus ?? 'missing'}`);
      done(ok);
    });
    req.on('error', (err: Error) => {
      noteError(err.message);
      done(false);
    });
    req.on('close', () => done(false));
    req.end(FRAME);
  });
}

/** Sends `count` calls at `rate`, each through `fire`; resolves when the last one is sent. */
function schedule(count: number, rate: number, fire: (lateMs: number) => void): Promise<void> {
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

async function fixedRate(): Promise<object> {
  const rate = Number(values.rate);
  const session = await connect();
  const pending: Promise<unknown>[] = [];
  await schedule(Math.round(rate * warmupS), rate, () => pending.push(call(session)));
  await Promise.all(pending);
  (globalThis as { gc?: () => void }).gc?.();
  const total = Math.round(rate * durationS);
  const latenciesUs = new Float64Array(total);
  let sent = 0;
  let completed = 0;
  let errors = 0;
  let late = 0;
  const inFlight: Promise<void>[] = [];
  await schedule(total, rate, (lateMs) => {
    if (lateMs > 5) late++;
    sent++;
    inFlight.push(
      call(session).then((us) => {
        if (us === null) errors++;
        else latenciesUs[completed++] = us;
      }),
    );
  });
  await Promise.race([Promise.all(inFlight), new Promise((r) => setTimeout(r, 10_000))]);
  session.destroy();
  return { rate, sent, completed, errors, late, ...quantiles(latenciesUs, completed), firstError };
}

async function closedLoop(): Promise<object> {
  const concurrency = Number(values.concurrency);
  const sessions = await Promise.all(Array.from({ length: Number(values.connections) }, connect));
  let measuring = false;
  let stopping = false;
  const cap = 2_000_000;
  const latenciesUs = new Float64Array(cap);
  let calls = 0;
  let errors = 0;
  const worker = async (i: number) => {
    const s = sessions[i % sessions.length]!;
    while (!stopping) {
      const us = await call(s);
      if (!measuring) continue;
      if (us === null) errors++;
      else if (calls < cap) latenciesUs[calls++] = us;
    }
  };
  const workers = Array.from({ length: concurrency }, (_, i) => worker(i));
  await new Promise((r) => setTimeout(r, warmupS * 1000));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationS * 1000));
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  stopping = true;
  await Promise.race([Promise.all(workers), new Promise((r) => setTimeout(r, 10_000))]);
  for (const s of sessions) s.destroy();
  const { p50Ms, p99Ms } = quantiles(latenciesUs, calls);
  return { calls, seconds, callsPerSec: calls / seconds, p50Ms, p99Ms, errors, firstError };
}

async function bidi(): Promise<object> {
  const client = echoClient(port);
  const stream = client.Bidi() as grpc.ClientDuplexStream<typeof REQUEST, EchoReply>;
  const window = Number(values.window);
  let sent = 0;
  let received = 0;
  let failed: string | null = null;
  let writing = true;
  let waiting = false;
  const pump = (): void => {
    waiting = false;
    while (writing && failed === null && sent - received < window) {
      sent++;
      if (!stream.write(REQUEST)) {
        waiting = true;
        stream.once('drain', pump);
        return;
      }
    }
  };
  stream.on('data', () => {
    received++;
    // A window's worth answered: write more (unless a 'drain' is awaited already).
    if (!waiting && sent - received < window / 2) pump();
  });
  stream.on('error', (err: grpc.ServiceError) => {
    failed ??= `${grpc.status[err.code] ?? err.code}: ${err.details}`;
  });
  pump();
  await new Promise((r) => setTimeout(r, warmupS * 1000));
  const r0 = received;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationS * 1000));
  const messages = received - r0;
  const seconds = (performance.now() - t0) / 1000;
  writing = false;
  stream.end();
  await Promise.race([new Promise((r) => stream.once('status', r)), new Promise((r) => setTimeout(r, 5000))]);
  client.close();
  return {
    messages,
    seconds,
    messagesPerSec: messages / seconds,
    sent,
    received,
    errors: failed === null ? 0 : 1,
    firstError: failed,
  };
}

const run = { rate: fixedRate, unary: closedLoop, bidi }[values.mode!];
if (run === undefined) {
  process.stderr.write(`unknown --mode ${values.mode}\n`);
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(await run())}\n`);
process.exit(0);
