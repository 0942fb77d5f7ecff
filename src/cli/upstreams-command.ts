// `meshlet upstreams [--watch]`: each upstream's endpoints and breaker; --watch streams changes over the gRPC admin API.
import {
  ADMIN_TIMEOUT_MS,
  AdminUnreachable,
  readAdmin,
  table,
  type UpstreamsAnswer,
} from './admin-client.ts';
import { EXIT } from './exit-codes.ts';
import { isoTime } from '../telemetry/utc-time.ts';

/** An upstream as the table prints it (the HTTP view and the proto messages both map to it). */
interface Row {
  name: string;
  healthy: number;
  total: number;
  synced: boolean;
  loadBalancer: string;
  circuitBreaker: string;
  endpoints: { id: string; state: string; weight: number }[];
}

/** The table of upstreams. */
export function upstreamsTable(rows: readonly Row[]): string {
  if (rows.length === 0) return 'no upstreams';
  const lines = [['UPSTREAM', 'HEALTHY/TOTAL', 'BREAKER', 'BALANCER', 'ENDPOINTS']];
  for (const u of [...rows].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const endpoints = u.endpoints
      .map(
        (e) =>
          `${e.id}${e.weight === 1 ? '' : ` w${e.weight}`}${e.state === 'healthy' ? '' : ` (${e.state})`}`,
      )
      .join(', ');
    lines.push([
      u.name,
      `${u.healthy}/${u.total}${u.synced ? '' : ' (not synced)'}`,
      u.circuitBreaker,
      u.loadBalancer,
      endpoints === '' ? '-' : endpoints,
    ]);
  }
  return table(lines);
}

/** Prints the upstreams once, read over HTTP (`GET /upstreams`). Exit 0, or 1 when unreachable. */
export async function upstreamsCommand(admin: string, json: boolean): Promise<number> {
  let answer: UpstreamsAnswer;
  try {
    answer = (await readAdmin<UpstreamsAnswer>(admin, '/upstreams', ['registry', 'upstreams'])).body;
  } catch (err) {
    if (!(err instanceof AdminUnreachable)) throw err;
    process.stderr.write(`meshlet: ${err.message}\n`);
    return EXIT.runtime;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    return EXIT.ok;
  }
  const rows = Object.entries(answer.upstreams).map(([name, u]) => ({ name, ...u }));
  process.stdout.write(`${upstreamsTable(rows)}\n`);
  return EXIT.ok;
}

/**
 * Checks an `--admin-grpc` value: `HOST:PORT` (an IPv6 address in brackets), port 1–65535. Returns
 * why it is not one (a usage error, exit 2), or undefined when it is.
 */
export function badGrpcTarget(target: string): string | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]@]+):(\d{1,5})$/.exec(target);
  if (m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535) return undefined;
  return `--admin-grpc: expected HOST:PORT like "127.0.0.1:15002", got "${target}"`;
}

/**
 * Longest wait for the watch's first snapshot, ms: the HTTP verbs' ({@link ADMIN_TIMEOUT_MS}). Also the
 * watch channel's keepalive interval and ping-ack timeout, so a path that dies silently later is
 * noticed within twice this (≤ 5 s until the next ping, then 5 s for its ack).
 */
export const WATCH_DEADLINE_MS = ADMIN_TIMEOUT_MS;

/**
 * grpc-js channel options of the watch: no proxy, and keepalive pings every {@link WATCH_DEADLINE_MS}
 * (also while no call is open) that must be acked within {@link WATCH_DEADLINE_MS}, else the call
 * fails UNAVAILABLE. meshlet's gRPC admin server (grpc-js) enforces no minimum ping interval, so it
 * never answers GOAWAY too_many_pings; a server that does makes grpc-js double the interval.
 */
const WATCH_CHANNEL_OPTIONS = {
  'grpc.enable_http_proxy': 0,
  'grpc.keepalive_time_ms': WATCH_DEADLINE_MS,
  'grpc.keepalive_timeout_ms': WATCH_DEADLINE_MS,
  'grpc.keepalive_permit_without_calls': 1,
};

/** Where the gRPC admin API listens: `target` when given, else what `GET ADMIN/` says. */
async function grpcTargetOf(admin: string, target: string | undefined): Promise<string> {
  if (target !== undefined) return target;
  const { body } = await readAdmin<{ grpc: { address: string } | null }>(admin, '/', ['endpoints']);
  if (body.grpc === null || body.grpc === undefined) {
    throw new AdminUnreachable(`the gRPC admin API is off on ${admin} (listeners.adminGrpc.enabled: false)`);
  }
  return body.grpc.address;
}

/**
 * `meshlet upstreams --watch`: subscribes to `WatchUpstreams` and prints every snapshot — redrawn
 * in place when stdout is a terminal, else one block per snapshot headed by its time (or one JSON
 * line each with `--json`). Runs until interrupted (exit 0), or until the stream fails or meshlet ends
 * it (exit 1, with one line on stderr saying so). No first snapshot within {@link WATCH_DEADLINE_MS}
 * (a port that accepts but never answers) is a failure too, and keepalive pings notice a path that
 * dies later within twice that.
 * @param grpcTarget `host:port` of the gRPC admin API (anything else: exit 2); default: asked from the
 *   HTTP admin's `GET /`.
 */
export async function watchUpstreamsCommand(
  admin: string,
  grpcTarget: string | undefined,
  json: boolean,
): Promise<number> {
  const bad = grpcTarget === undefined ? undefined : badGrpcTarget(grpcTarget);
  if (bad !== undefined) {
    process.stderr.write(`meshlet: ${bad}\n`);
    return EXIT.usage;
  }
  let target: string;
  try {
    target = await grpcTargetOf(admin, grpcTarget);
  } catch (err) {
    if (!(err instanceof AdminUnreachable)) throw err;
    process.stderr.write(`meshlet: ${err.message}\n`);
    return EXIT.runtime;
  }
  const grpc = await import('@grpc/grpc-js');
  const { adminClientClass } = await import('../admin-grpc/admin-proto.ts');
  const Admin = adminClientClass();
  const client = new Admin(target, grpc.credentials.createInsecure(), WATCH_CHANNEL_OPTIONS);
  const tty = process.stdout.isTTY === true && !json;
  return new Promise<number>((finish) => {
    // The first outcome wins: a cancelled or failed call also ends its stream afterwards.
    let settled = false;
    const resolve = (code: number): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      finish(code);
    };
    const call = (
      client as unknown as { WatchUpstreams(req: object): NodeJS.EventEmitter & { cancel(): void } }
    ).WatchUpstreams({});
    const deadline = setTimeout(() => {
      process.stderr.write(
        `meshlet: watching upstreams on ${target}: no snapshot within ${WATCH_DEADLINE_MS} ms\n`,
      );
      resolve(EXIT.runtime);
      call.cancel();
      client.close();
    }, WATCH_DEADLINE_MS);
    const stop = () => {
      call.cancel();
      client.close();
      resolve(EXIT.ok);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    call.on('data', (s: { upstreams: Row[]; atUnixMs: number }) => {
      clearTimeout(deadline);
      const at = isoTime(s.atUnixMs);
      if (json) process.stdout.write(`${JSON.stringify(s)}\n`);
      else if (tty)
        process.stdout.write(
          `\x1b[H\x1b[2J${at}  (${target}, Ctrl-C to stop)\n${upstreamsTable(s.upstreams)}\n`,
        );
      else process.stdout.write(`# ${at}\n${upstreamsTable(s.upstreams)}\n\n`);
    });
    call.on('error', (err: Error & { code?: number }) => {
      if (err.code === grpc.status.CANCELLED) return;
      process.stderr.write(`meshlet: watching upstreams on ${target}: ${err.message}\n`);
      client.close();
      resolve(EXIT.runtime);
    });
    call.on('end', () => {
      client.close();
      if (settled) return;
      // The server ended the stream (status OK): meshlet shut down or restarted.
      process.stderr.write(`meshlet: watching upstreams on ${target}: the stream ended (meshlet stopped?)\n`);
      resolve(EXIT.runtime);
    });
  });
}
