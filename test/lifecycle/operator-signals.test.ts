// Signals at awkward moments: SIGHUP while meshlet is still starting, and SIGUSR2/SIGQUIT, which must reach the app under `meshlet run -- CMD`.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'undici';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { CLI, spawnMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { freePorts, runWrapped, until, writeApp } from './wrapper-helpers.ts';

describe('SIGHUP while meshlet is starting', () => {
  let consul: ConsulDouble;
  let app: TestUpstream;

  beforeAll(async () => {
    consul = new ConsulDouble();
    await consul.start();
    app = await startUpstream();
  });
  afterAll(async () => {
    await consul.stop();
    await app.close();
  });

  it('does not kill it (SIGHUP’s default action): the reload is held and applied once it runs', async () => {
    const config = (attempts: number) =>
      stringify(
        freePorts({
          service: { name: 'web', port: app.port, address: '127.0.0.1' },
          registry: { type: 'consul', consul: { address: consul.url }, register: false },
          tls: { source: 'consul' },
          upstreams: { users: { retries: { attempts } } },
          shutdown: { drainDelay: 0 },
        } as never),
      );
    const file = writeConfig(config(1));
    // Certificates come from Consul: while its answers take 1.5 s, meshlet is inside Daemon.start.
    consul.setSlow(1500);
    const proc = spawn(process.execPath, [CLI, 'run', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      proc.on('exit', (code, signal) => r({ code, signal })),
    );
    try {
      await until(
        () => consul.requests.some((r) => r.path.startsWith('/v1/agent/connect/ca/')),
        10_000,
        'meshlet asked Consul for its certificates',
      );
      writeFileSync(file, config(2));
      proc.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 200));
      expect(proc.exitCode).toBeNull();
      expect(proc.signalCode).toBeNull();
      consul.setSlow(0);
      await until(() => out.includes('"config reloaded"'), 10_000, 'the held reload');
      expect(out).toContain('SIGHUP came while meshlet was starting: reloading now');
      const admin = /"admin":\{"address":"127\.0\.0\.1","port":(\d+)\}/.exec(out)![1];
      const doc = (await (await request(`http://127.0.0.1:${admin}/config`)).body.json()) as {
        lastReload: { result: string };
        config: { upstreams: { users: { retries: { attempts: number } } } };
      };
      expect(doc.lastReload.result).toBe('ok');
      expect(doc.config.upstreams.users.retries.attempts).toBe(2);
      proc.kill('SIGTERM');
      expect(await exited).toEqual({ code: 0, signal: null });
    } finally {
      consul.setSlow(0);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
  });
});

describe('meshlet run -- CMD passes SIGUSR2 and SIGQUIT to the app', () => {
  it.each(['SIGUSR2', 'SIGQUIT'] as const)(
    '%s reaches the app (not left to kill meshlet and orphan the app); meshlet exits with the app',
    async (signal) => {
      const out = writeConfig('', 'app-out.txt');
      const appFile = writeApp(`
import { appendFileSync } from 'node:fs';
process.on('${signal}', () => { appendFileSync(process.env.APP_OUT, '${signal}\\n'); process.exit(0); });
appendFileSync(process.env.APP_OUT, 'pid ' + process.pid + '\\n');
setInterval(() => {}, 1000);
`);
      const w = runWrapped(
        {
          registry: { type: 'static', endpoints: { users: ['127.0.0.1:9'] } },
          accessLog: { enabled: false },
        },
        [process.execPath, appFile],
        { env: { APP_OUT: out } },
      );
      let appPid = 0;
      try {
        await until(() => /pid (\d+)/.test(readFileSync(out, 'utf8')), 10_000, 'the app started');
        appPid = Number(/pid (\d+)/.exec(readFileSync(out, 'utf8'))![1]);
        w.proc.kill(signal);
        const { code } = await w.exited;
        expect(readFileSync(out, 'utf8')).toContain(`${signal}\n`);
        expect(code).toBe(0);
      } finally {
        if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
        // Without the pass-on the app outlives meshlet: stop it by its PID.
        if (appPid !== 0) {
          try {
            process.kill(appPid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
    },
  );
});

describe('SIGHUP with a hostile file', () => {
  it('an alias bomb is refused in one line: the running config stays, /config says why, and it still serves', async () => {
    const mesh = await spawnMeshlet({
      listeners: { adminGrpc: { enabled: false } },
      registry: { type: 'static', endpoints: { users: ['127.0.0.1:9'] } },
      accessLog: { enabled: false },
    });
    try {
      const levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
      for (const [i, k] of ['b', 'c', 'd', 'e', 'f', 'g'].entries())
        levels.push(`${k}: &${k} [${Array(10).fill(`*${'abcdefg'[i]}`).join(',')}]`);
      writeFileSync(mesh.configFile, `${levels.join('\n')}\n`);
      mesh.proc.kill('SIGHUP');
      await until(
        () => mesh.stdout.some((l) => l.includes('config reload refused; keeping the running config')),
        5000,
        'the refusal',
      ).catch((e: Error) => {
        throw new Error(`${e.message}: ${mesh.stdout.join('\n')} ${mesh.stderr.join('')}`);
      });
      const doc = (await (await request(`${mesh.admin}/config`)).body.json()) as {
        lastReload: { result: string; reason: string };
        config: { registry: { endpoints: Record<string, unknown> } };
      };
      expect(doc.lastReload.result).toBe('failed');
      expect(doc.lastReload.reason).toMatch(
        /: not valid YAML: aliases expand too far \(more than 100 alias expansions\)$/,
      );
      expect(Object.keys(doc.config.registry.endpoints)).toEqual(['users']);
      expect((await request(`${mesh.admin}/ready`)).statusCode).toBe(200);
    } finally {
      mesh.proc.kill('SIGTERM');
      await mesh.exited;
    }
  });
});
