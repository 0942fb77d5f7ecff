// `npm run demo`: the three services answer through their meshlets within 15 s, the gateway's calls show in three meshlets' /metrics, Ctrl-C ends every process.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';

const DEMO = fileURLToPath(new URL('../../scripts/demo.ts', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm run demo', () => {
  it('is up within 15 s, the gateway reaches both backends through meshlets, and SIGINT stops every process', async () => {
    const started = performance.now();
    const demo = spawn(process.execPath, [DEMO], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((r) => demo.once('exit', (code) => r(code)));
    try {
      const ready = await new Promise<{ gateway: string; metrics: Record<string, string>; pids: number[] }>(
        (resolve, reject) => {
          let buf = '';
          const timer = setTimeout(() => reject(new Error('demo not ready within 15 s')), 15_000);
          demo.stdout!.on('data', (d: Buffer) => {
            buf += d.toString();
            for (const line of buf.split('\n')) {
              if (line.includes('"demo ready"')) {
                clearTimeout(timer);
                resolve(JSON.parse(line));
              }
            }
          });
        },
      );
      expect(performance.now() - started).toBeLessThan(15_000);
      const res = await request(ready.gateway);
      const body = (await res.body.json()) as { results: { upstream: string; status: number }[] };
      expect(body.results.map((r) => r.upstream).sort()).toEqual(['question-service', 'user-service']);
      const text = async (svc: string) => await (await request(ready.metrics[svc]!)).body.text();
      const gw = await text('api-gateway');
      for (const up of ['user-service', 'question-service']) {
        expect(gw).toMatch(
          new RegExp(
            `meshlet_requests_total\\{direction="outbound",upstream="${up}",status_class="2xx"\\} [1-9]`,
          ),
        );
        expect(await text(up)).toMatch(
          new RegExp(
            `meshlet_requests_total\\{direction="inbound",upstream="${up}",status_class="2xx"\\} [1-9]`,
          ),
        );
      }
      demo.kill('SIGINT');
      expect(await exited).toBe(0);
      for (const pid of ready.pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    } finally {
      if (demo.exitCode === null) demo.kill('SIGKILL');
    }
  }, 40_000);
});
