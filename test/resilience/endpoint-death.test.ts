// Issue 11: with the default config, an endpoint SIGKILLed under load loses no idempotent request.
import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool, request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';

/** An HTTP endpoint in its own process (so it can really die), answering after a short delay. */
async function spawnEndpoint(): Promise<{ proc: ChildProcess; port: number }> {
  const script = `
    const http = require('node:http');
    const server = http.createServer((req, res) => {
      req.resume();
      setTimeout(() => res.end('ok ' + server.address().port), 2);
    });
    server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));`;
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    proc.once('exit', (code) => reject(new Error(`endpoint exited with ${code}`)));
  });
  return { proc, port };
}

describe('an endpoint dies under load', () => {
  const endpoints: { proc: ChildProcess; port: number }[] = [];
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) endpoints.push(await spawnEndpoint());
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: endpoints.map((e) => `127.0.0.1:${e.port}`) } },
    });
  });
  afterAll(async () => {
    await mesh?.close();
    for (const e of endpoints)
      if (e.proc.exitCode === null && e.proc.signalCode === null) e.proc.kill('SIGKILL');
  });

  it('3,000 GETs at concurrency 20, one of 3 endpoints SIGKILLed mid-run: zero fail (default config)', async () => {
    const client = new Pool(mesh.outbound, { connections: 20 });
    const total = 3000;
    const killAt = 1000;
    let next = 0;
    let done = 0;
    const failures: string[] = [];
    const worker = async (): Promise<void> => {
      while (next < total) {
        next++;
        const res = await client.request({ path: '/v1/x', method: 'GET', headers: { host: 'users' } });
        const body = await res.body.text();
        if (res.statusCode !== 200) failures.push(`${res.statusCode} ${body}`);
        done++;
        if (done === killAt) endpoints[0]!.proc.kill('SIGKILL');
      }
    };
    await Promise.all(Array.from({ length: 20 }, worker));
    await client.close();

    expect(failures.join('\n')).toBe('');
    expect(done).toBe(total);
    // The killed endpoint had requests in flight; they and the connects that followed were retried,
    // and outlier detection took it out.
    expect(endpoints[0]!.proc.signalCode).toBe('SIGKILL');
    const state = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
      upstreams: Record<string, { endpoints: { port: number; state: string }[] }>;
    };
    const dead = state.upstreams.users!.endpoints.find((e) => e.port === endpoints[0]!.port);
    expect(dead?.state).toBe('ejected');
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    const retried = [...metrics.matchAll(/^meshlet_retries_total\{upstream="users",[^}]*\} (\d+)$/gm)];
    expect(retried.reduce((sum, m) => sum + Number(m[1]), 0)).toBeGreaterThan(0);
    expect(metrics).not.toMatch(
      /^meshlet_retries_skipped_total\{upstream="users",why="retry-limit"\} [1-9]/m,
    );
  });
});
