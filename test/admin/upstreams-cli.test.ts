// `meshlet upstreams` prints each upstream over HTTP; `--watch` streams a new view on every change through WatchUpstreams.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { CLI, runCli, startMeshlet, writeConfig } from '../helpers/meshlet.ts';

describe('meshlet upstreams', () => {
  it('prints the table once; --watch prints a new one after an endpoints-file edit and exits 0 on SIGINT', async () => {
    const file = writeConfig({ users: ['127.0.0.1:9001'] } as never, 'endpoints.yaml');
    const mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'static', file },
      accessLog: { enabled: false },
    });
    try {
      const once = await runCli(['upstreams', '--admin', mesh.admin]);
      expect(once.code).toBe(0);
      expect(once.stdout).toMatch(/^users\s+1\/1\s+closed\s+round_robin\s+127\.0\.0\.1:9001$/m);

      const watch = spawn(process.execPath, [CLI, 'upstreams', '--watch', '--admin', mesh.admin], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      watch.stdout.on('data', (d) => (out += d));
      const exited = new Promise<number | null>((resolve) => watch.on('exit', resolve));
      const until = async (re: RegExp) => {
        const started = performance.now();
        while (!re.test(out)) {
          if (performance.now() - started > 8000) throw new Error(`no ${re} in: ${out}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await until(/127\.0\.0\.1:9001/);
      writeFileSync(file, stringify({ users: ['127.0.0.1:9001', '127.0.0.1:9002'] }));
      await until(/127\.0\.0\.1:9001, 127\.0\.0\.1:9002/);
      expect(out.match(/^# \d{4}-\d\d-\d\dT/gm)).toHaveLength(2); // one block per snapshot (stdout is not a TTY)
      watch.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      await mesh.close();
    }
  });
});
