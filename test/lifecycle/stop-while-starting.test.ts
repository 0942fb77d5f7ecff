// SIGTERM while meshlet is still starting: it exits 0 and leaves no registration behind in Consul.
import { type ChildProcess, spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon, StartAbortedError } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { CLI, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { freePorts, until } from './wrapper-helpers.ts';

let consul: ConsulDouble;
let app: TestUpstream;

beforeAll(async () => {
  consul = new ConsulDouble();
  await consul.start();
  app = await startUpstream();
});
afterAll(async () => {
  consul?.setSlow(0);
  await app?.close();
  await consul?.stop();
});

/** `web` registered in the double (as `serviceId`), with its certificates from the double's Connect CA. */
function webConfig(serviceId: string, tls: boolean): ConfigInput {
  return freePorts({
    service: { name: 'web', port: app.port, address: '127.0.0.1' },
    ...(tls ? { listeners: { inbound: { address: '127.0.0.1', port: 0 } }, tls: { source: 'consul' } } : {}),
    registry: {
      type: 'consul',
      consul: { address: consul.url },
      serviceId,
      check: { interval: '1s', timeout: '500ms' },
    },
    shutdown: { drainDelay: 0 },
  } as never);
}

/** `meshlet run` on `config`, its stdout collected. */
function run(config: ConfigInput): {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
} {
  const proc = spawn(process.execPath, [CLI, 'run', '--config', writeConfig(stringify(config))], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { proc, out: () => out, exited };
}

/** The exit, or a rejection after `ms`. */
function exitWithin<T>(exited: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    exited,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no exit within ${ms} ms`)), ms)),
  ]);
}

describe('a stop signal while meshlet starts', () => {
  it('SIGTERM while the Connect CA answers slowly: meshlet stops waiting, exits 0 and never registers', async () => {
    // Every Consul answer takes 30 s: meshlet sits in its start, waiting for its certificates.
    consul.setSlow(30_000);
    const m = run(webConfig('web-slow-ca', true));
    try {
      await until(
        () => consul.requests.some((r) => r.path.startsWith('/v1/agent/connect/ca/')),
        10_000,
        'meshlet asked Consul for its certificates',
      );
      m.proc.kill('SIGTERM');
      expect(await exitWithin(m.exited, 10_000)).toEqual({ code: 0, signal: null });
      expect(m.out()).toContain('"meshlet stopped while starting"');
      consul.setSlow(0);
      await new Promise((r) => setTimeout(r, 500));
      expect(consul.requests.some((r) => r.path === '/v1/agent/service/register')).toBe(false);
      expect(consul.instances('web')).toEqual([]);
    } finally {
      consul.setSlow(0);
      if (m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGKILL');
    }
  });

  it('SIGTERM as soon as the instance shows in the catalog: exit 0 and the instance is deregistered', async () => {
    for (const attempt of [1, 2, 3]) {
      const id = `web-race-${attempt}`;
      const m = run(webConfig(id, attempt !== 2));
      try {
        await until(
          () => consul.instances('web').some((s) => s.id === id) || m.proc.exitCode !== null,
          15_000,
          'the registration',
        );
        m.proc.kill('SIGTERM');
        expect(await exitWithin(m.exited, 10_000)).toEqual({ code: 0, signal: null });
        expect(consul.instances('web').map((s) => s.id)).not.toContain(id);
      } finally {
        if (m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGKILL');
      }
    }
  });

  it('Daemon.start rejects with StartAbortedError when aborted while it waits for certificates, and cleans up', async () => {
    consul.setSlow(30_000);
    const abort = new AbortController();
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const config = validateConfig({
      ...webConfig('web-aborted', true),
      listeners: {
        outbound: { port: 0 },
        admin: { port: 0 },
        adminGrpc: { enabled: false },
        inbound: { address: '127.0.0.1', port: 0 },
      },
    } as ConfigInput);
    try {
      const starting = Daemon.start(config, {
        logger: createLogger('info', sink),
        processMetrics: false,
        abort: abort.signal,
      });
      await until(
        () => consul.requests.some((r) => r.path.startsWith('/v1/agent/connect/ca/leaf/web')),
        10_000,
        'the leaf request',
      );
      abort.abort();
      const outcome = await exitWithin(
        starting.then(
          () => 'started',
          (err: unknown) => err,
        ),
        5000,
      );
      expect(outcome).toBeInstanceOf(StartAbortedError);
      consul.setSlow(0);
      await new Promise((r) => setTimeout(r, 300));
      expect(consul.instances('web').map((s) => s.id)).not.toContain('web-aborted');
    } finally {
      consul.setSlow(0);
    }
  });
});
