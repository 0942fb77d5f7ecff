// The config file's watch across meshlet's life: a change made while meshlet starts is applied, reloads never overlap, nothing reloads while draining, and `meshlet run -- CMD` watches too.
import { readFileSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load-config.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { writeConfig } from '../helpers/meshlet.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { answeredBy, configText, spawnOn, type Watched } from './config-watch-helpers.ts';
import { untilDaemonImage } from './daemon-image.ts';
import { until, writeApp } from './wrapper-helpers.ts';

const SLOW_LOAD = fileURLToPath(new URL('./slow-load.ts', import.meta.url));
/** A change must be in use within this long: the 250 ms debounce plus a reload, well under the 10 s poll, ms. */
const PICKUP_MS = 3000;
/** The drain delay of the drain tests, ms: the window in which a change must not be applied. */
const DRAIN_DELAY_MS = 1500;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const PORT_ZERO = { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } };

let a: TestUpstream;
let b: TestUpstream;
beforeAll(async () => {
  a = await startUpstream();
  b = await startUpstream();
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

describe('the config file watch over meshlet’s life', () => {
  const running: (() => void)[] = [];
  afterEach(() => {
    for (const kill of running.splice(0)) kill();
  });

  it('a change written while meshlet starts (the daemon image still loading) is applied once it runs, trigger "file"', async () => {
    const listeners = {
      outbound: { port: await closedPort() },
      admin: { port: await closedPort() },
      adminGrpc: { enabled: false },
    };
    const file = writeConfig(configText(listeners, { users: [a.endpoint] }));
    let writing: Promise<boolean> | undefined;
    const mesh = await spawnOn(file, {
      // Loading src/daemon.ts takes 2 s longer in the re-executed image: the file changes meanwhile.
      env: { NODE_OPTIONS: `--import ${SLOW_LOAD}`, MESHLET_TEST_SLOW_LOAD_MS: '2000' },
      onSpawn: (proc) => {
        let out = '';
        proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        writing = (async () => {
          await untilDaemonImage(proc.pid!);
          await sleep(300);
          writeFileSync(file, configText(listeners, { users: [b.endpoint] }));
          return out.includes('meshlet started');
        })();
      },
    });
    running.push(mesh.kill);
    expect(await writing).toBe(false); // written before meshlet started
    await until(() => mesh.reloads().length > 0, PICKUP_MS, 'the reload of the file changed while starting');
    expect(mesh.reloads()).toEqual([
      expect.objectContaining({ msg: 'config reloaded', trigger: 'file', result: 'ok' }),
    ]);
    expect(await answeredBy(mesh.outbound, '/', 'users')).toBe(b.port);
  });

  it('reloads asked for while one runs run once after it (in-process Daemon): three at once are two reloads, the second naming the signal', async () => {
    const file = writeConfig(configText(PORT_ZERO, { users: [a.endpoint] }));
    const logs: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line));
        cb();
      },
    });
    const daemon = await Daemon.start(loadConfigFile(file), {
      logger: createLogger('info', sink),
      configFile: file,
      processMetrics: false,
    });
    running.push(() => void daemon.shutdown('test'));
    const bound = daemon.addresses();
    const listeners = {
      ...PORT_ZERO,
      outbound: { port: bound.outbound.port },
      admin: { port: bound.admin.port },
    };
    writeFileSync(file, configText(listeners, { users: [b.endpoint] }));
    const results = await Promise.all([
      daemon.reload('file'),
      daemon.reload('signal'),
      daemon.reload('file'),
    ]);
    expect(results).toEqual([true, true, true]);
    const reloaded = logs.filter((l) => l.msg === 'config reloaded');
    expect(reloaded.map((l) => [l.trigger, l.result])).toEqual([
      ['file', 'ok'],
      ['signal', 'ok'],
    ]);
    expect(daemon.table.get('users')?.endpoints[0]?.endpoint.port).toBe(b.port);

    const stopping = daemon.shutdown('test');
    expect(await daemon.reload('signal')).toBe(false);
    expect(logs.filter((l) => l.msg === 'config reloaded')).toHaveLength(2);
    expect(logs.find((l) => l.msg === 'config reload skipped: meshlet is shutting down')).toMatchObject({
      trigger: 'signal',
    });
    await stopping;
  });

  it('a change written while meshlet drains (SIGTERM) is not applied', async () => {
    const file = writeConfig(
      configText(PORT_ZERO, { users: [a.endpoint] }, [], { drainDelay: DRAIN_DELAY_MS }),
    );
    const mesh = await spawnOn(file);
    running.push(mesh.kill);
    mesh.proc.kill('SIGTERM');
    await until(() => mesh.logs.some((l) => l.msg === 'draining'), 5000, 'the drain');
    const from = mesh.logs.length;
    writeFileSync(
      file,
      configText(mesh.listeners, { users: [b.endpoint] }, [], { drainDelay: DRAIN_DELAY_MS }),
    );
    const code = await Promise.race([mesh.exited, sleep(10_000).then(() => 'timeout')]);
    expect(code).toBe(0);
    expect(mesh.reloads(from)).toEqual([]);
  });

  it('meshlet run -- CMD: a file change is applied, a SIGHUP reloads once and reaches the app, and a change while draining is not applied', async () => {
    const marker = writeConfig('', 'hangups.log');
    const app = writeApp(`
import { appendFileSync } from 'node:fs';
const keep = setInterval(() => {}, 1000);
process.on('SIGHUP', () => appendFileSync(${JSON.stringify(marker)}, 'HUP\\n'));
process.on('SIGTERM', () => { clearInterval(keep); process.exit(0); });
`);
    const file = writeConfig(
      configText(PORT_ZERO, { users: [a.endpoint] }, [], { drainDelay: DRAIN_DELAY_MS }),
    );
    const mesh: Watched = await spawnOn(file, { command: [process.execPath, app] });
    running.push(mesh.kill);
    await until(() => mesh.logs.some((l) => l.msg === 'app started'), 10_000, 'the app');
    const v1 = configText(mesh.listeners, { users: [b.endpoint] }, [], { drainDelay: DRAIN_DELAY_MS });

    writeFileSync(file, v1);
    await until(() => mesh.reloads().length > 0, PICKUP_MS, 'the file reload');
    expect(mesh.reloads()).toEqual([
      expect.objectContaining({ msg: 'config reloaded', trigger: 'file', result: 'ok' }),
    ]);
    expect(await answeredBy(mesh.outbound, '/', 'users')).toBe(b.port);

    let from = mesh.logs.length;
    mesh.proc.kill('SIGHUP');
    await until(() => mesh.reloads(from).length > 0, PICKUP_MS, 'the SIGHUP reload');
    await until(() => readFileSync(marker, 'utf8') === 'HUP\n', PICKUP_MS, 'the app got SIGHUP');
    await sleep(500);
    expect(mesh.reloads(from)).toEqual([
      expect.objectContaining({ msg: 'config reloaded', trigger: 'signal' }),
    ]);

    mesh.proc.kill('SIGTERM');
    await until(() => mesh.logs.some((l) => l.msg === 'draining'), 5000, 'the drain');
    from = mesh.logs.length;
    writeFileSync(
      file,
      configText(mesh.listeners, { users: [a.endpoint] }, [], { drainDelay: DRAIN_DELAY_MS }),
    );
    const code = await Promise.race([mesh.exited, sleep(10_000).then(() => 'timeout')]);
    expect(code).toBe(0);
    expect(mesh.reloads(from)).toEqual([]);
  });
});
