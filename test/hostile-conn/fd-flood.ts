// Holds a spawned meshlet at a low file-descriptor limit (prlimit) and floods one of its listeners until it has none left; for the EMFILE tests (and the h2c app they send to).
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createServer, type Http2Server } from 'node:http2';
import { type AddressInfo, connect, type Socket } from 'node:net';
import type { ConfigInput } from '../../src/config/schema.ts';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';

/** The fd limit meshlet runs under in these tests. */
export const FD_LIMIT = 256;
/** Connections thrown at it: more than the limit, bounded. */
export const FLOOD = 400;
/** The warning meshlet writes when a connection it opens fails with EMFILE/ENFILE. */
export const FD_WARNING = 'meshlet out of file descriptors';

/** Open file descriptors of process `pid` (Linux /proc). */
export const fdsOf = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** Sets the running process `pid`'s soft and hard fd limit to {@link FD_LIMIT}. */
export function limitFds(pid: number): void {
  execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${FD_LIMIT}:${FD_LIMIT}`]);
}

/** Polls `check` every 50 ms until it holds; throws naming `what` after `ms`. */
export async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Opens {@link FLOOD} connections to 127.0.0.1:port and waits until process `pid` holds
 * {@link FD_LIMIT} descriptors; resolves with a function that closes them all and waits until
 * `pid` is back under half the limit.
 */
export async function floodUntilExhausted(port: number, pid: number): Promise<() => Promise<void>> {
  const sockets: Socket[] = [];
  const release = async (): Promise<void> => {
    for (const s of sockets) s.destroy();
    await until(() => fdsOf(pid) < FD_LIMIT / 2, 'meshlet to free its fds');
  };
  try {
    for (let i = 0; i < FLOOD; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      sockets.push(s);
    }
    await until(() => fdsOf(pid) >= FD_LIMIT, `meshlet to reach ${FD_LIMIT} fds (at ${fdsOf(pid)})`);
  } catch (err) {
    for (const s of sockets) s.destroy();
    throw err;
  }
  return release;
}

/** Spawns meshlet with `config` and sets its fd limit to {@link FD_LIMIT}; `pid` is its process ID. */
export async function spawnLimited(config: ConfigInput): Promise<{ m: MeshletProcess; pid: number }> {
  const m = await spawnMeshlet(config);
  const pid = m.proc.pid!;
  limitFds(pid);
  return { m, pid };
}

/** SIGKILLs a meshlet {@link spawnLimited} started (if it started and still runs) and waits for its exit. */
export async function killLimited(m: MeshletProcess | undefined): Promise<void> {
  if (m !== undefined && m.proc.exitCode === null) {
    m.proc.kill('SIGKILL');
    await m.exited;
  }
}

/** The {@link FD_WARNING} lines a spawned meshlet wrote. */
export const fdWarnings = (m: MeshletProcess): string[] =>
  m.stdout.filter((l) => l.includes(`"msg":"${FD_WARNING}"`));

/** An h2c server on 127.0.0.1 answering every request 200; counts the requests. */
export interface H2App {
  server: Http2Server;
  port: number;
  /** `127.0.0.1:<port>`. */
  endpoint: string;
  requests(): number;
  close(): Promise<void>;
}

/** Starts an {@link H2App} whose body is `body` (default `h2 <its port>`). */
export async function startH2App(body?: string): Promise<H2App> {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    res.end(body ?? `h2 ${(server.address() as AddressInfo).port}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    endpoint: `127.0.0.1:${port}`,
    requests: () => requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
