// Runs `meshlet run --config FILE -- node APP` as a real process for the lifecycle tests, and the apps they run.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll } from 'vitest';
import { stringify } from 'yaml';
import type { ConfigInput } from '../../src/config/schema.ts';
import { CLI, writeConfig } from '../helpers/meshlet.ts';
import { onLines } from '../helpers/lines.ts';

/** Every `meshlet run` this test file started that has not exited yet. */
const running = new Set<ChildProcess>();

// A test that failed before stopping its meshlet leaves it running, and with it its app (in a process
// group of its own, which a later SIGKILL of meshlet would orphan): SIGTERM stops both, as a user's would.
afterAll(async () => {
  await Promise.all(
    [...running].map(
      (proc) =>
        new Promise<void>((resolve) => {
          const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000);
          proc.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          proc.kill('SIGTERM');
        }),
    ),
  );
});

/** A running `meshlet run … -- node APP`. */
export interface Wrapped {
  proc: ChildProcess;
  /** Parsed JSON log lines (and raw non-JSON lines as `{raw}`), as they arrive. */
  logs: Record<string, unknown>[];
  stderr: string[];
  /** Exit code and the time (Date.now()) of the exit. */
  exited: Promise<{ code: number | null; at: number }>;
  /** Resolves with the first log line whose msg is `msg`. */
  logged(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** Listens on port 0 everywhere (the gRPC admin off) unless the test says otherwise. */
export function freePorts(input: ConfigInput): ConfigInput {
  return {
    ...input,
    listeners: {
      outbound: { port: 0 },
      admin: { port: 0 },
      adminGrpc: { enabled: false },
      ...input.listeners,
    },
  };
}

/** Writes an app script (ESM) to a temp file; returns its path. */
export function writeApp(source: string): string {
  return writeConfig(source, 'app.mjs');
}

/** Starts `meshlet run --config FILE [flags] -- CMD…` with `env` added to this process's environment. */
export function runWrapped(
  config: ConfigInput | string,
  command: string[],
  options: { flags?: string[]; env?: NodeJS.ProcessEnv } = {},
): Wrapped {
  const file = writeConfig(typeof config === 'string' ? config : stringify(freePorts(config)));
  const proc = spawn(
    process.execPath,
    [CLI, 'run', '--config', file, ...(options.flags ?? []), '--', ...command],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env },
    },
  );
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const waiters: (() => void)[] = [];
  onLines(proc.stdout!, (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      logs.push({ raw: line });
    }
    for (const w of waiters.splice(0)) w();
  });
  proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  running.add(proc);
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    proc.on('exit', (code) => {
      running.delete(proc);
      resolve({ code, at: Date.now() });
    }),
  );
  const logged = (msg: string, timeoutMs = 10_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "${msg}" log within ${timeoutMs} ms; stderr: ${stderr.join('')}`)),
        timeoutMs,
      );
      const look = () => {
        const found = logs.find((l) => l.msg === msg);
        if (found !== undefined) {
          clearTimeout(timer);
          resolve(found);
        } else waiters.push(look);
      };
      void exited.then(() => setTimeout(look, 10));
      look();
    });
  return { proc, logs, stderr, exited, logged };
}

/** Reads a JSON file an app wrote, or undefined when it is empty (as `writeConfig('')` made it) or absent. */
export function readJson<T = Record<string, unknown>>(file: string): T | undefined {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  return text === '' ? undefined : (JSON.parse(text) as T);
}

/** Waits until `probe` holds, polling every 10 ms; rejects after `timeoutMs`. */
export async function until(probe: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const started = performance.now();
  while (!probe()) {
    if (performance.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
