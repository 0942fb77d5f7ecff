// Issue 12: an endpoint SIGKILLed or shutting down gracefully (GOAWAY) under gRPC load fails no call.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { echoClient, type EchoStub, unary } from '../helpers/grpc.ts';

const MAIN = fileURLToPath(new URL('../helpers/grpc-echo-main.ts', import.meta.url));

/** An Echo server in its own process. */
async function spawnEcho(name: string): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, [MAIN, name], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    proc.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
  });
  return { proc, port };
}

/** `total` unary calls at `concurrency`; `at(done)` runs once when `done` calls have finished. */
async function load(
  client: EchoStub,
  total: number,
  concurrency: number,
  atCount: number,
  at: () => void,
): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      next++;
      const r = await unary(client, { message: 'x', delayMs: 2 });
      if (r.error !== undefined) failures.push(`${r.error.code} ${r.error.details}`);
      if (++done === atCount) at();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return failures;
}

describe('gRPC endpoint loss', () => {
  const procs: ChildProcess[] = [];
  let mesh: InProcessMeshlet | undefined;
  let client: EchoStub | undefined;

  afterEach(async () => {
    client?.close();
    await mesh?.close();
    for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  });

  async function setUp(): Promise<{ proc: ChildProcess; port: number }[]> {
    const servers = [];
    for (let i = 0; i < 3; i++) servers.push(await spawnEcho(`e${i}`));
    procs.push(...servers.map((s) => s.proc));
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: servers.map((s) => `127.0.0.1:${s.port}`) } },
      upstreams: { users: { protocol: 'grpc' } },
      accessLog: { enabled: false },
    });
    client = echoClient(new URL(mesh.outbound).host, 'users');
    return servers;
  }

  it('an endpoint SIGKILLed during 2,000 unary calls at concurrency 20: zero failed calls', async () => {
    const servers = await setUp();
    const failures = await load(client!, 2000, 20, 700, () => servers[0]!.proc.kill('SIGKILL'));
    expect(failures.join('\n')).toBe('');
    expect(servers[0]!.proc.signalCode).toBe('SIGKILL');
  });

  it('an endpoint shutting down gracefully (GOAWAY) during load: zero failed calls', async () => {
    const servers = await setUp();
    const exited = new Promise((resolve) => servers[1]!.proc.once('exit', resolve));
    const failures = await load(client!, 2000, 20, 700, () => servers[1]!.proc.kill('SIGTERM'));
    expect(failures.join('\n')).toBe('');
    expect(await exited).toBe(0);
  });
});
