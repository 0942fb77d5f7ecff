// The real `meshlet` CLI run from a chosen working directory, and development certificates written to disk, for the config-check tests.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDevCa, type DevCa, issueLeaf, type IssueLeafOptions } from '../../src/tls/dev-ca.ts';
import { CLI, runCli, runCliToEnd } from '../helpers/meshlet.ts';
import { tempDir as makeTempDir } from '../helpers/temp-dir.ts';
import { onLines } from '../helpers/lines.ts';

/** A fresh temp directory, removed after the test file (test/helpers/temp-dir.ts). */
export function tempDir(prefix = 'meshlet-check-'): string {
  return makeTempDir(prefix);
}

/** Writes `files` (relative name → text) under `dir`, creating subdirectories. */
export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    const path = join(dir, name);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, text);
  }
}

/** Runs `meshlet ARGS` in `cwd`; resolves with its exit code and output (killed after `timeoutMs`). */
export function cli(
  args: string[],
  cwd: string,
  timeoutMs = 15_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCli(args, timeoutMs, CLI, cwd);
}

/** {@link cli}, resolving only once the process exited and its stdout and stderr closed (the whole output). */
export function cliToEnd(
  args: string[],
  cwd: string,
  timeoutMs = 15_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCliToEnd(args, { timeoutMs, cwd });
}

/** A `meshlet run` started in a chosen directory. */
export interface RunningMeshlet {
  readonly proc: ChildProcess;
  /** Lines written to stdout so far (JSON logs). */
  readonly stdout: string[];
  /** Sends SIGTERM and resolves with the exit code (SIGKILL after 10 s). */
  stop(): Promise<number | null>;
}

/**
 * Runs `meshlet run --config FILE` in `cwd` until it logs `meshlet started` (resolves) or exits
 * (rejects with its stderr); gives up after 15 s.
 */
export async function runIn(file: string, cwd: string): Promise<RunningMeshlet> {
  const proc = spawn(process.execPath, [CLI, 'run', '--config', file], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  let stderr = '';
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  proc.stderr.on('data', (d) => (stderr += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`meshlet did not start within 15 s: ${stderr}`));
    }, 15_000);
    onLines(proc.stdout, (line) => {
      stdout.push(line);
      if (line.includes('"meshlet started"')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`meshlet exited ${code} before it started: ${stderr}`));
    });
  });
  return {
    proc,
    stdout,
    async stop() {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** A development CA and a leaf for `web` it issued. */
export interface DevPki {
  readonly ca: DevCa;
  readonly leaf: { certPem: string; keyPem: string };
}

/** A CA for `mesh.test` and a leaf for `web` (options override the leaf's, e.g. `notAfter`). */
export async function devPki(leaf: Partial<IssueLeafOptions> = {}): Promise<DevPki> {
  const ca = await createDevCa({ trustDomain: 'mesh.test' });
  const issued = await issueLeaf({ ca, service: 'web', trustDomain: 'mesh.test', ...leaf });
  return { ca, leaf: { certPem: issued.certPem, keyPem: issued.keyPem } };
}
