// Runs `meshlet run --config FILE [-- CMD…]` on a config file the test places (a ConfigMap-style volume too) and reads its reload log lines.
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'undici';
import { stringify } from 'yaml';
import { CLI } from '../helpers/meshlet.ts';
import { onLines } from '../helpers/lines.ts';

/** A running `meshlet run` whose config file the test rewrites. */
export interface Watched {
  readonly proc: ChildProcess;
  /** Parsed JSON log lines, as they arrive. */
  readonly logs: Record<string, unknown>[];
  readonly outbound: string;
  readonly admin: string;
  /** The listeners block naming the ports meshlet is bound to (a rewrite keeps them: no restart needed). */
  readonly listeners: object;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** Log lines of reloads (`config reloaded`, refused or skipped) since line `from`. */
  reloads(from?: number): Record<string, unknown>[];
  /** Kills the process if it still runs. */
  kill(): void;
}

/** `msg`s a reload of the config file logs. */
const RELOAD_MESSAGES = [
  'config reloaded',
  'config reload refused; keeping the running config',
  'config reload skipped: meshlet is shutting down',
];

/** A static-registry config: `endpoints` per upstream, `routes` by path prefix (stripped), no access log. */
export function configText(
  listeners: object,
  endpoints: Record<string, string[]>,
  routes: { prefix: string; upstream: string }[] = [],
  shutdown: object = { drainDelay: 0 },
): string {
  return stringify({
    listeners,
    registry: { type: 'static', endpoints },
    routes: routes.map((r) => ({ match: { pathPrefix: r.prefix }, upstream: r.upstream, stripPrefix: true })),
    shutdown,
    accessLog: { enabled: false },
  });
}

/** Options of {@link spawnOn}. */
export interface SpawnOptions {
  /** The app to run under meshlet (after `--`). */
  command?: string[];
  /** Added to this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Called with the process as soon as it is spawned (before it started). */
  onSpawn?: (proc: ChildProcess) => void;
}

/** Spawns `meshlet run --config file [-- command…]` and waits for "meshlet started". */
export async function spawnOn(file: string, options: SpawnOptions = {}): Promise<Watched> {
  const command = options.command ?? [];
  const args = [CLI, 'run', '--config', file, ...(command.length > 0 ? ['--', ...command] : [])];
  const proc = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  options.onSpawn?.(proc);
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const started = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`meshlet did not start: ${stderr}`)), 15_000);
    onLines(proc.stdout!, (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === 'meshlet started') {
          clearTimeout(timer);
          resolve(entry);
        }
      } catch {
        logs.push({ raw: line });
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    void exited.then((code) => reject(new Error(`meshlet exited with ${code}: ${stderr}`)));
  });
  const kill = (): void => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  };
  let entry: Record<string, unknown>;
  try {
    entry = await started;
  } catch (err) {
    kill();
    throw err;
  }
  const port = (key: string) => (entry[key] as { port: number }).port;
  return {
    proc,
    logs,
    outbound: `http://127.0.0.1:${port('outbound')}`,
    admin: `http://127.0.0.1:${port('admin')}`,
    listeners: {
      outbound: { port: port('outbound') },
      admin: { port: port('admin') },
      adminGrpc: { enabled: false },
    },
    exited,
    reloads: (from = 0) => logs.slice(from).filter((l) => RELOAD_MESSAGES.includes(String(l.msg))),
    kill,
  };
}

/** The port of the upstream that answered `GET path` with `host` on meshlet's outbound listener, or the status when meshlet refused. */
export async function answeredBy(outbound: string, path: string, host?: string): Promise<number | string> {
  const res = await request(`${outbound}${path}`, { headers: host === undefined ? {} : { host } });
  await res.body.dump();
  const port = res.headers['x-upstream-port'];
  return port === undefined ? `status ${res.statusCode}` : Number(port);
}

/** The value of the series `name` (with labels, as in the text) from `GET /metrics`, 0 when absent. */
export async function metric(admin: string, name: string): Promise<number> {
  const text = await (await request(`${admin}/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}
