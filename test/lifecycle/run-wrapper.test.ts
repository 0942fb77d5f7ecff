// `meshlet run --config FILE -- CMD`: the app starts once meshlet is ready, sees where meshlet is, stops before it, and its exit code is meshlet's.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { writeConfig } from '../helpers/meshlet.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { readJson, runWrapped, until, writeApp } from './wrapper-helpers.ts';

/** An app that makes one request through meshlet the instant it starts, records it with its env, and exits `EXIT_CODE`. */
const FIRST_REQUEST_APP = `
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
const url = new URL(process.env.MESHLET_OUTBOUND ?? 'http://127.0.0.1:1');
const req = request({ host: url.hostname, port: url.port, path: '/first', headers: { host: 'users' } }, (res) => {
  let body = '';
  res.on('data', (d) => (body += d));
  res.on('end', () => done({ status: res.statusCode, body }));
});
req.on('error', (err) => done({ error: String(err) }));
req.end();
function done(result) {
  writeFileSync(process.env.APP_OUT, JSON.stringify({ ...result, env: process.env }));
  process.exit(Number(process.env.EXIT_CODE ?? 0));
}
`;

/** An app calling meshlet every 10 ms; on SIGTERM it asks /ready, keeps calling for 1 s, then exits 0. */
const LOOP_APP = `
import { Agent, request } from 'node:http';
import { writeFileSync } from 'node:fs';
const url = new URL(process.env.MESHLET_OUTBOUND);
const agent = new Agent({ keepAlive: true });
const seen = { ok: 0, failed: 0, failures: [] };
const once = () => {
  const req = request({ host: url.hostname, port: url.port, path: '/tick', headers: { host: 'users' }, agent }, (res) => {
    res.resume();
    res.on('end', () => (res.statusCode === 200 ? seen.ok++ : (seen.failed++, seen.failures.push(res.statusCode))));
  });
  req.on('error', (err) => (seen.failed++, seen.failures.push(err.code ?? err.message)));
  req.end();
};
const loop = setInterval(once, 10);
process.on('SIGTERM', async () => {
  seen.sigtermAt = Date.now();
  seen.readyAtSigterm = await fetch(process.env.MESHLET_ADMIN + '/ready').then((r) => r.status, (e) => String(e));
  setTimeout(() => {
    clearInterval(loop);
    setTimeout(() => {
      seen.exitAt = Date.now();
      writeFileSync(process.env.APP_OUT, JSON.stringify(seen));
      process.exit(0);
    }, 100);
  }, 1000);
});
`;

// Each test runs its own meshlet and app. Some that measure no time run side by side (it.concurrent):
// the first three (mostly waiting on readiness), later --export-proxy-env beside SIGHUP; never more than
// three meshlets at once. The ones timing the shutdown (SIGTERM, the grace period, a crash) run alone.
describe('meshlet run -- CMD', () => {
  let users: TestUpstream;
  beforeAll(async () => {
    users = await startUpstream();
  });
  afterAll(() => users.close());

  it.concurrent(
    "the app's first request, made the instant it starts, succeeds; it sees MESHLET_OUTBOUND and MESHLET_ADMIN and nothing else changed; its exit code is meshlet's",
    async () => {
      const out = writeConfig('', 'out.json');
      const app = writeApp(FIRST_REQUEST_APP);
      const env = { APP_OUT: out, EXIT_CODE: '7', MY_OWN_SETTING: 'kept' };
      const run = runWrapped(
        { registry: { type: 'static', endpoints: { users: [users.endpoint] } } },
        [process.execPath, app],
        { env },
      );
      const { code } = await run.exited;
      expect(code).toBe(7);
      const seen = readJson<{ status: number; env: Record<string, string> }>(out)!;
      expect(seen.status).toBe(200);
      expect(users.requests.some((r) => r.url === '/first')).toBe(true);
      const started = run.logs.find((l) => l.msg === 'meshlet started') as {
        outbound: { port: number };
        admin: { port: number };
      };
      expect(seen.env.MESHLET_OUTBOUND).toBe(`http://127.0.0.1:${started.outbound.port}`);
      expect(seen.env.MESHLET_ADMIN).toBe(`http://127.0.0.1:${started.admin.port}`);
      // Exactly the environment meshlet was given, plus the two variables: nothing meshlet set for itself
      // (jemalloc's LD_PRELOAD and MALLOC_CONF, MESHLET_GC_TUNED, the config handover) leaks into the app.
      const expected: Record<string, string | undefined> = { ...process.env, ...env };
      const { MESHLET_OUTBOUND, MESHLET_ADMIN, ...rest } = seen.env;
      expect(MESHLET_OUTBOUND).toBeDefined();
      expect(MESHLET_ADMIN).toBeDefined();
      for (const k of Object.keys(rest)) if (k !== '_') expect(rest[k], k).toBe(expected[k]);
      for (const k of Object.keys(expected)) if (k !== '_') expect(rest[k], k).toBe(expected[k]);
      expect(rest.HTTP_PROXY).toBeUndefined();
      expect(rest.GLIBC_TUNABLES).toBeUndefined();
      expect(rest.LD_PRELOAD).toBeUndefined();
      expect(rest.MALLOC_CONF).toBeUndefined();
    },
  );

  it.concurrent(
    'waits for readiness: with Consul up only 700 ms after meshlet started, the first request still succeeds',
    async () => {
      const port = await closedPort();
      const out = writeConfig('', 'out.json');
      const app = writeApp(FIRST_REQUEST_APP);
      const run = runWrapped(
        {
          registry: { type: 'consul', consul: { address: `http://127.0.0.1:${port}` } },
          upstreams: { users: {} },
          shutdown: { drainDelay: 0 },
        },
        [process.execPath, app],
        { env: { APP_OUT: out } },
      );
      await run.logged('meshlet started');
      await new Promise((r) => setTimeout(r, 700));
      expect(readJson(out)).toBeUndefined(); // not started while not ready
      const double = new ConsulDouble();
      try {
        await double.start({ port });
        double.addInstance({ service: 'users', id: 'users-1', port: users.port });
        const { code } = await run.exited;
        expect(code).toBe(0);
        expect(readJson<{ status: number }>(out)!.status).toBe(200);
      } finally {
        await double.stop();
      }
    },
  );

  it.concurrent(
    'gives up when meshlet is not ready within --ready-timeout: exit 1, the app never ran',
    async () => {
      const port = await closedPort();
      const marker = writeConfig('', 'ran.json');
      const app = writeApp(
        `import { writeFileSync } from 'node:fs'; writeFileSync(process.env.APP_OUT, '{}');`,
      );
      const run = runWrapped(
        {
          registry: { type: 'consul', consul: { address: `http://127.0.0.1:${port}` } },
          upstreams: { users: {} },
        },
        [process.execPath, app],
        { flags: ['--ready-timeout', '500ms'], env: { APP_OUT: marker } },
      );
      const { code } = await run.exited;
      expect(code).toBe(1);
      expect(run.stderr.join('')).toMatch(
        /not ready within 500 ms \(registry: not synced yet.*\); the app was not started/,
      );
      expect(readJson(marker)).toBeUndefined();
    },
  );

  it('SIGTERM: /ready 503 and the drain delay first, then the app gets SIGTERM while the outbound listener serves it; zero failed requests, the app exits before meshlet, in time', async () => {
    const out = writeConfig('', 'out.json');
    const app = writeApp(LOOP_APP);
    const drainDelay = 400;
    const appGracePeriod = 3000;
    const run = runWrapped(
      {
        registry: { type: 'static', endpoints: { users: [users.endpoint] } },
        shutdown: { drainDelay, appGracePeriod },
        accessLog: { enabled: false },
      },
      [process.execPath, app],
      { env: { APP_OUT: out } },
    );
    await run.logged('app started');
    const before = users.requests.length;
    await until(() => users.requests.length - before >= 20, 5000, 'the app calls through meshlet');
    const t0 = Date.now();
    run.proc.kill('SIGTERM');
    const { code, at } = await run.exited;
    expect(code).toBe(0);
    const seen = readJson<{
      ok: number;
      failed: number;
      failures: unknown[];
      readyAtSigterm: number;
      sigtermAt: number;
      exitAt: number;
    }>(out)!;
    expect(seen.failures).toEqual([]);
    expect(seen.failed).toBe(0);
    expect(seen.ok).toBeGreaterThan(100); // it kept calling for the drain delay and its own second
    expect(seen.readyAtSigterm).toBe(503);
    expect(seen.sigtermAt - t0).toBeGreaterThanOrEqual(drainDelay - 20);
    expect(seen.exitAt).toBeLessThan(at);
    expect(at - t0).toBeLessThan(drainDelay + appGracePeriod + 1000);
    // The order as meshlet logged it, by each line's time: the logger writes asynchronously and its
    // final synchronous flush at exit can put a buffered line on stdout before one still in flight.
    const order = run.logs
      .filter((l) =>
        ['draining', 'stopping the app', 'app exited', 'meshlet stopped'].includes(l.msg as string),
      )
      .sort((a, b) => Date.parse(a.time as string) - Date.parse(b.time as string))
      .map((l) => l.msg);
    expect(order).toEqual(['draining', 'stopping the app', 'app exited', 'meshlet stopped']);
  });

  it('an app that ignores SIGTERM is SIGKILLed after shutdown.appGracePeriod; exit 137', async () => {
    const app = writeApp(
      `process.on('SIGTERM', () => {}); setInterval(() => {}, 1000); console.log('{"msg":"app up"}');`,
    );
    const run = runWrapped(
      { registry: { type: 'static', endpoints: {} }, shutdown: { drainDelay: 0, appGracePeriod: '500ms' } },
      [process.execPath, app],
    );
    await run.logged('app up');
    const t0 = Date.now();
    run.proc.kill('SIGTERM');
    const { code, at } = await run.exited;
    expect(code).toBe(137);
    expect(at - t0).toBeGreaterThanOrEqual(450);
    expect(at - t0).toBeLessThan(1500);
  });

  it('the app crashes: meshlet drains at once (the drain delay skipped) and exits non-zero within 1 s', async () => {
    const app = writeApp(
      `console.log('{"msg":"app up"}'); setTimeout(() => { throw new Error('boom'); }, 200);`,
    );
    const run = runWrapped({ registry: { type: 'static', endpoints: {} }, shutdown: { drainDelay: '3s' } }, [
      process.execPath,
      app,
    ]);
    await run.logged('app up');
    const exitedLog = await run.logged('app exited; meshlet drains and exits with its code');
    const { code, at } = await run.exited;
    expect(code).toBe(1);
    expect(at - Date.parse(exitedLog.time as string)).toBeLessThan(1000);
    expect(run.logs.find((l) => l.msg === 'draining')?.drainDelayMs).toBe(0);
  });

  it('exits with the signal the app died of (128 + n), and 127 when the command does not exist', async () => {
    const app = writeApp(`process.kill(process.pid, 'SIGSEGV');`);
    const crashed = runWrapped({ registry: { type: 'static', endpoints: {} } }, [process.execPath, app]);
    const missing = runWrapped({ registry: { type: 'static', endpoints: {} } }, [
      '/nonexistent/meshlet-test-app',
    ]);
    expect((await crashed.exited).code).toBe(139);
    expect((await missing.exited).code).toBe(127);
    expect(missing.stderr.join('')).toMatch(
      /cannot start the app: \/nonexistent\/meshlet-test-app: command not found/,
    );
  });

  it.concurrent(
    '--export-proxy-env gives the app HTTP_PROXY, http_proxy and NO_PROXY; a forward-proxy request through it succeeds',
    async () => {
      const out = writeConfig('', 'out.json');
      const app = writeApp(`
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
const proxy = new URL(process.env.HTTP_PROXY);
request({ host: proxy.hostname, port: proxy.port, path: 'http://users/via-proxy' }, (res) => {
  res.resume();
  res.on('end', () => { writeFileSync(process.env.APP_OUT, JSON.stringify({ status: res.statusCode, env: process.env })); process.exit(0); });
}).end();`);
      const run = runWrapped(
        { registry: { type: 'static', endpoints: { users: [users.endpoint] } } },
        [process.execPath, app],
        {
          flags: ['--export-proxy-env'],
          env: { APP_OUT: out },
        },
      );
      expect((await run.exited).code).toBe(0);
      const seen = readJson<{ status: number; env: Record<string, string> }>(out)!;
      expect(seen.status).toBe(200);
      expect(seen.env.HTTP_PROXY).toBe(seen.env.MESHLET_OUTBOUND);
      expect(seen.env.http_proxy).toBe(seen.env.MESHLET_OUTBOUND);
      expect(seen.env.NO_PROXY).toBe('localhost,127.0.0.1');
      expect(users.requests.some((r) => r.url === '/via-proxy')).toBe(true);
    },
  );

  it.concurrent(
    'SIGHUP reloads meshlet and reaches the app; SIGINT stops both, the app with SIGINT',
    async () => {
      const out = writeConfig('', 'signals.log');
      const app = writeApp(`
import { appendFileSync } from 'node:fs';
for (const s of ['SIGHUP', 'SIGINT']) process.on(s, () => { appendFileSync(process.env.APP_OUT, s + '\\n'); if (s === 'SIGINT') process.exit(0); });
setInterval(() => {}, 1000);
console.log('{"msg":"app up"}');`);
      const run = runWrapped(
        { registry: { type: 'static', endpoints: {} }, shutdown: { drainDelay: 0 } },
        [process.execPath, app],
        {
          env: { APP_OUT: out },
        },
      );
      await run.logged('app up');
      run.proc.kill('SIGHUP');
      await run.logged('config reloaded');
      await until(() => readFileSync(out, 'utf8').includes('SIGHUP'), 2000, 'the app got SIGHUP');
      run.proc.kill('SIGINT');
      expect((await run.exited).code).toBe(0);
      expect(readFileSync(out, 'utf8')).toBe('SIGHUP\nSIGINT\n');
    },
  );

  it('meshlet cannot start (its admin port is taken): exit 1 saying why, the app never ran', async () => {
    const taken = await startUpstream();
    try {
      const marker = writeConfig('', 'ran.json');
      const app = writeApp(
        `import { writeFileSync } from 'node:fs'; writeFileSync(process.env.APP_OUT, '{}');`,
      );
      const run = runWrapped(
        { listeners: { admin: { port: taken.port } }, registry: { type: 'static', endpoints: {} } },
        [process.execPath, app],
        { env: { APP_OUT: marker } },
      );
      expect((await run.exited).code).toBe(1);
      expect(run.stderr.join('')).toMatch(/cannot start: address in use .*; the app was not started/);
      expect(readJson(marker)).toBeUndefined();
    } finally {
      await taken.close();
    }
  });
});
