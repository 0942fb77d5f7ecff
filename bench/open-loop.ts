// A tiny open-loop (fixed-rate) HTTP/1.1 load generator: sends on schedule whatever the responses do.
//
// wrk cannot hold a fixed rate, so the "added latency at 2,000 req/s" figures come from here. Every
// millisecond it sends the requests whose scheduled time has passed (request i is due at
// start + i / rate), each on an idle keep-alive connection (a new one while fewer than
// --connections are open, else the first to come free), and records each latency from the moment
// it was sent (or, when it waited for a connection, meant to be sent) to the end of its body, in
// µs. First a warm-up at the same rate (default 1 s, not recorded). Bounded: exactly
// rate × (warmup + duration) requests, then at most 10 s to drain. Prints one JSON object (see
// FixedRateResult in lib/load.ts).
//
// It speaks HTTP/1.1 on node:net itself rather than through undici because a generator is part of
// every latency it measures. undici's per-request objects (request, handler, body stream, promises)
// had its garbage collector pause it ~320 times per 10 s round at 2,000 req/s (~0.2 s in all),
// during a fifth to half of the requests above the p99 of every target, direct included: direct's
// p99 read 1.7-3.1 ms through undici and reads 0.14-0.22 ms here, so a target's added p99 is its
// own. A request costs one pre-built write and the parsing of its response in place. It reads what
// the bench's targets answer: a status line, headers, and a body framed by Content-Length or
// chunked (204 and 304 without one); a response without framing counts as an error and closes its
// connection, as does a connection closed before the end of a response.
//
//   node bench/open-loop.ts --port 8080 --rate 2000 --duration 10 [--warmup 1] [--connections 64] [--path /]
import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

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
const maxConnections = Number(values.connections);
if (!(port > 0 && rate > 0 && durationS > 0 && maxConnections > 0)) {
  process.stderr.write('usage: open-loop.ts --port N --rate R --duration S [--connections C] [--path P]\n');
  process.exit(2);
}
const REQUEST = Buffer.from(`GET ${values.path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n\r\n`, 'latin1');
const total = Math.round(rate * durationS);
const latenciesUs = new Float64Array(total);
let sent = 0;
let completed = 0;
let errors = 0;
let late = 0;
/** Requests sent (or waiting for a connection) and not yet answered, warm-up included. */
let outstanding = 0;

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;
const CHUNKED = /\r\ntransfer-encoding:[^\r]*chunked/i;

/** Where a connection is in the response it is reading. */
const Read = { Head: 0, Body: 1, ChunkSize: 2, ChunkData: 3, ChunkEnd: 4, Trailer: 5 } as const;
type Read = (typeof Read)[keyof typeof Read];

/** One keep-alive connection and the response it is reading, parsed in place. */
class Connection {
  readonly socket: Socket;
  /** performance.now() when the request on this connection was sent; -1 when idle. */
  sentAt = -1;
  record = false;
  private read: Read = Read.Head;
  /** Header bytes received so far, when the head spans several reads; else null. */
  private partialHead: Buffer | null = null;
  private status = 0;
  /** Body or chunk bytes still to come. */
  private remaining = 0;
  /** The chunk-size or trailer line read so far. */
  private line = '';

  /** Whether the connection was ever established. */
  private connected = false;

  constructor(onReady: (c: Connection) => void) {
    this.socket = connect({ port, host: '127.0.0.1', noDelay: true }, () => {
      this.connected = true;
      onReady(this);
    });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', () => {});
    this.socket.on('close', () => this.onClose());
  }

  send(sentAt: number, record: boolean): void {
    this.sentAt = sentAt;
    this.record = record;
    this.socket.write(REQUEST);
  }

  private onClose(): void {
    open.delete(this);
    const i = idle.indexOf(this);
    if (i >= 0) idle.splice(i, 1);
    if (this.sentAt >= 0) this.finish(false);
    else if (!this.connected) {
      // refused: the oldest request waiting for a connection fails, rather than waiting for ever
      const w = waiting.shift();
      if (w) settle(w.record, false, 0);
    }
    pump();
  }

  private onData(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && this.sentAt >= 0) {
      switch (this.read) {
        case Read.Head: {
          if (this.partialHead !== null) {
            chunk = Buffer.concat([this.partialHead, chunk.subarray(at)]);
            at = 0;
            this.partialHead = null;
          }
          const end = chunk.indexOf(CRLFCRLF, at);
          if (end < 0) {
            this.partialHead = Buffer.from(chunk.subarray(at));
            return;
          }
          const head = chunk.toString('latin1', at, end + 2);
          at = end + 4;
          this.status = Number(head.slice(9, 12));
          const length = LENGTH.exec(head);
          if (CHUNKED.test(head)) this.read = Read.ChunkSize;
          else if (length) {
            this.remaining = Number(length[1]);
            this.read = Read.Body;
          } else if (this.status === 204 || this.status === 304) {
            this.remaining = 0;
            this.read = Read.Body;
          } else {
            this.socket.destroy(); // no framing this generator reads: an error (onClose)
            return;
          }
          if (this.read === Read.Body && this.remaining === 0) this.done();
          break;
        }
        case Read.Body:
        case Read.ChunkData: {
          const take = Math.min(this.remaining, chunk.length - at);
          at += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            if (this.read === Read.Body) this.done();
            else this.read = Read.ChunkEnd;
          }
          break;
        }
        case Read.ChunkSize:
        case Read.ChunkEnd:
        case Read.Trailer: {
          const nl = chunk.indexOf(10, at);
          const upTo = nl < 0 ? chunk.length : nl + 1;
          this.line += chunk.toString('latin1', at, upTo);
          at = upTo;
          if (nl < 0) break;
          const line = this.line.trimEnd();
          this.line = '';
          if (this.read === Read.ChunkEnd) this.read = Read.ChunkSize;
          else if (this.read === Read.Trailer) {
            if (line === '') this.done();
          } else {
            this.remaining = Number.parseInt(line, 16);
            this.read = this.remaining > 0 ? Read.ChunkData : Read.Trailer;
          }
          break;
        }
      }
    }
  }

  private done(): void {
    this.read = Read.Head;
    this.finish(this.status >= 200 && this.status < 400);
    if (!this.socket.destroyed) {
      idle.push(this);
      pump();
    }
  }

  private finish(ok: boolean): void {
    const sentAt = this.sentAt;
    this.sentAt = -1;
    settle(this.record, ok, sentAt);
  }
}

/** One request is over: its latency from `sentAt` (performance.now(), ms) is recorded when it is measured and answered. */
function settle(record: boolean, ok: boolean, sentAt: number): void {
  outstanding--;
  if (!record) return;
  if (!ok) errors++;
  else if (completed < total) latenciesUs[completed++] = (performance.now() - sentAt) * 1000;
}

const open = new Set<Connection>();
const idle: Connection[] = [];
/** Requests waiting for a free connection, oldest first: when each was sent, and whether it is recorded. */
const waiting: { sentAt: number; record: boolean }[] = [];

/** Sends the waiting requests on idle connections, opening new ones up to --connections. */
function pump(): void {
  while (waiting.length > 0) {
    const c = idle.pop();
    if (c) {
      const w = waiting.shift()!;
      c.send(w.sentAt, w.record);
      continue;
    }
    if (open.size >= maxConnections) return;
    open.add(
      new Connection((ready) => {
        idle.push(ready);
        pump();
      }),
    );
    // one new connection per waiting request at most, until they are ready
    if (open.size - idle.length >= waiting.length) return;
  }
}

/** Sends a request now, on an idle connection, or queues it (its latency still counted from `sentAt`). */
function request(sentAt: number, record: boolean): void {
  outstanding++;
  const c = waiting.length === 0 ? idle.pop() : undefined;
  if (c) c.send(sentAt, record);
  else {
    waiting.push({ sentAt, record });
    pump();
  }
}

/** Sends `count` requests at `rate`, calling `fire` with each one's due time; resolves when the last one is sent. */
function schedule(count: number, fire: (due: number, now: number) => void): Promise<void> {
  const start = performance.now();
  let n = 0;
  return new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      const due = Math.min(count, Math.floor(((now - start) * rate) / 1000) + 1);
      while (n < due) {
        fire(start + (n * 1000) / rate, now);
        n++;
      }
      if (n >= count) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
}

async function drained(until: number): Promise<void> {
  while (outstanding > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
}

// Warm the connections, then this generator's own code at the full rate (not recorded): a cold
// generator is late on its first requests and measures its own JIT, not the target.
for (let i = 0; i < Math.min(maxConnections, 16); i++) request(performance.now(), false);
await drained(performance.now() + 10_000);
await schedule(Math.round(rate * Number(values.warmup)), (_due, now) => request(now, false));
await drained(performance.now() + 10_000);
// A full collection now (run with --expose-gc), so the warm-up's garbage is not collected, with a
// pause, inside the measured window.
(globalThis as { gc?: () => void }).gc?.();

await schedule(total, (due, now) => {
  if (now - due > 5) late++;
  sent++;
  request(now, true);
});
await drained(performance.now() + 10_000);
errors += outstanding; // never answered within the drain
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
for (const c of open) c.socket.destroy();
process.exit(0);
