// A real meshlet's /metrics, process series included, after varied traffic: promtool (Prometheus' own linter) finds nothing to fault.
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { scrapeMetrics } from '../helpers/metrics.ts';

let app: Server;
let meshlet: MeshletProcess;

beforeAll(async () => {
  // Every third request is a 503, so failures, retries and local replies are counted too.
  let n = 0;
  app = createServer((_req, res) => {
    res.statusCode = ++n % 3 === 0 ? 503 : 200;
    res.end('app');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const port = (app.address() as AddressInfo).port;
  meshlet = await spawnMeshlet({
    // gcDurations: every process series meshlet can export.
    metrics: { gcDurations: true },
    registry: { endpoints: { users: [`127.0.0.1:${port}`], dead: ['127.0.0.1:1'] } },
    upstreams: { users: { retries: { attempts: 2, retryOn: ['5xx'] } } },
    listeners: { adminGrpc: { enabled: false } },
    shutdown: { drainDelay: 0 },
  });
});

afterAll(async () => {
  meshlet?.proc.kill('SIGTERM');
  await meshlet?.exited;
  await new Promise((r) => app?.close(r));
});

describe('a real daemon scraped', () => {
  it('passes promtool check metrics, process and Node series included', async () => {
    for (const host of ['users', 'users', 'users', 'dead', 'nosuch']) {
      const res = await request(`${meshlet.outbound}/x`, { headers: { host } });
      await res.body.dump();
    }
    const text = await scrapeMetrics(meshlet.admin);
    // The process series are there (the in-process test daemons leave them out).
    expect(text).toMatch(/^meshlet_process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^# TYPE meshlet_nodejs_active_handles gauge$/m);
    expect(text).toMatch(
      /^meshlet_requests_total\{direction="outbound",upstream="users",status_class="2xx"\} \d/m,
    );
    // No family but a counter is named _total (what promtool faults first).
    const notCounters = [...text.matchAll(/^# TYPE (\S+_total) (\S+)$/gm)].filter((m) => m[2] !== 'counter');
    expect(notCounters.map((m) => `${m[1]} ${m[2]}`)).toEqual([]);
    // promtool comes with Prometheus (.ci/run installs it); it exits non-zero with its findings on stderr.
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, timeout: 10_000 });
    expect(lint.error).toBeUndefined();
    expect(`${lint.stdout}${lint.stderr}`).toBe('');
    expect(lint.status).toBe(0);
  });
});
