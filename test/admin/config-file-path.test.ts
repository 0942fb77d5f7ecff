// GET /config names the config file by its absolute path, also when `meshlet run --config` was given a relative one.
import { spawn } from 'node:child_process';
import { realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { CLI } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';

describe('GET /config file', () => {
  it('is the absolute path of a config given as a relative --config', async () => {
    const dir = realpathSync(tempDir('meshlet-config-path-'));
    writeFileSync(
      join(dir, 'meshlet.yaml'),
      stringify({
        listeners: { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } },
      }),
    );
    const proc = spawn(process.execPath, [CLI, 'run', '--config', 'meshlet.yaml'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
    try {
      const admin = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('meshlet did not start within 15 s')), 15_000);
        let buffered = '';
        proc.stdout.on('data', (d: Buffer) => {
          buffered += d.toString();
          const m = /"msg":"meshlet started".*?"admin":\{"address":"[^"]*","port":(\d+)\}/.exec(buffered);
          if (m !== null) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
        proc.on('exit', (code) => reject(new Error(`meshlet exited with ${code}`)));
      });
      const doc = (await (await request(`http://127.0.0.1:${admin}/config`)).body.json()) as { file: string };
      expect(doc.file).toBe(join(dir, 'meshlet.yaml'));
    } finally {
      proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
  }, 30_000);
});
