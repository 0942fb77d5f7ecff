// A change of meshlet's own config file reloads it as SIGHUP does, however the file is replaced; a touch or an unchanged save does not; a half-written file is refused, then the complete one applied.
import { readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { spawnMeshlet, type MeshletProcess, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { fileSet, type FileSet, WRITE_STYLES } from '../hostile-state/file-writers.ts';
import { answeredBy, configText, metric, spawnOn, type Watched } from './config-watch-helpers.ts';
import { until } from './wrapper-helpers.ts';

const RECORD_MODULES = fileURLToPath(new URL('../helpers/record-modules.ts', import.meta.url));
/** A change must be in use within this long: the 250 ms debounce plus a reload, well under the 10 s poll, ms. */
const PICKUP_MS = 3000;
/** How long nothing may happen after a touch or an unchanged save: four debounce periods, ms. */
const QUIET_MS = 1000;
const OK = 'meshlet_config_reloads_total{source="config",result="ok"}';
const FAILED = 'meshlet_config_reloads_total{source="config",result="failed"}';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let a: TestUpstream;
let b: TestUpstream;
beforeAll(async () => {
  a = await startUpstream();
  b = await startUpstream();
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

/** Version 0 sends `users` to a; version 1 sends it to b and adds the route `/v1/` → `orders` (b). */
function version(v: 0 | 1, listeners: object): string {
  return v === 0
    ? configText(listeners, { users: [a.endpoint] })
    : configText(listeners, { users: [b.endpoint], orders: [b.endpoint] }, [
        { prefix: '/v1/', upstream: 'orders' },
      ]);
}

/** Parsed log lines of a spawnMeshlet process. */
function parsed(mesh: MeshletProcess): Record<string, unknown>[] {
  return mesh.stdout.flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

const reloadLines = (logs: Record<string, unknown>[]) =>
  logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('config reload'));

/** The listeners block naming the ports a spawnMeshlet process is bound to. */
function boundListeners(mesh: MeshletProcess): object {
  return {
    outbound: { port: Number(new URL(mesh.outbound).port) },
    admin: { port: Number(new URL(mesh.admin).port) },
    adminGrpc: { enabled: false },
  };
}

/** Kills a spawnMeshlet process (SIGKILL) if it is still running. */
const killer = (mesh: MeshletProcess) => (): void => {
  if (mesh.proc.exitCode === null && mesh.proc.signalCode === null) mesh.proc.kill('SIGKILL');
};

// Each case has its own meshlet process and config file, so the cases run side by side.
describe.concurrent('the config file is watched', () => {
  for (const style of WRITE_STYLES) {
    it(`a change written by ${style} is applied (new upstream endpoint and route), trigger "file"; saving the same text again or touching the file does not reload`, async ({
      onTestFinished,
    }: TestContext) => {
      const set: FileSet = fileSet(style);
      onTestFinished(() => set.remove());
      set.write({
        'meshlet.yaml': version(0, {
          outbound: { port: 0 },
          admin: { port: 0 },
          adminGrpc: { enabled: false },
        }),
      });
      const mesh: Watched = await spawnOn(set.path('meshlet.yaml'));
      onTestFinished(mesh.kill);
      expect(await answeredBy(mesh.outbound, '/', 'users')).toBe(a.port);
      expect(await answeredBy(mesh.outbound, '/v1/x')).toBe('status 404');

      const from = mesh.logs.length;
      set.write({ 'meshlet.yaml': version(1, mesh.listeners) });
      await until(() => mesh.reloads(from).length > 0, PICKUP_MS, `${style}: the reload`);
      expect(mesh.reloads(from)).toEqual([
        expect.objectContaining({ msg: 'config reloaded', trigger: 'file', result: 'ok' }),
      ]);
      expect(await answeredBy(mesh.outbound, '/', 'users')).toBe(b.port);
      expect(await answeredBy(mesh.outbound, '/v1/x')).toBe(b.port);

      // The same text written again the same way, then a touch: nothing to reload.
      set.write({ 'meshlet.yaml': version(1, mesh.listeners) });
      await sleep(QUIET_MS / 2);
      const now = new Date();
      utimesSync(set.path('meshlet.yaml'), now, now);
      await sleep(QUIET_MS);
      expect(mesh.reloads(from)).toHaveLength(1);
      expect(await metric(mesh.admin, OK)).toBe(1);
      expect(await metric(mesh.admin, FAILED)).toBe(0);
      expect(mesh.proc.exitCode).toBeNull();
    });
  }

  it('written in place: a half-written file and an empty one are refused (logged, counted, old config kept), then the complete write is applied', async ({
    onTestFinished,
  }: TestContext) => {
    const mesh = await spawnMeshlet({
      registry: { type: 'static', endpoints: { users: [a.endpoint] } },
      listeners: { adminGrpc: { enabled: false } },
    } as never);
    onTestFinished(killer(mesh));
    const complete = version(1, boundListeners(mesh));
    // Cut inside the route, before its upstream: the schema refuses it.
    const half = complete.slice(0, complete.indexOf('/v1/') + 2);
    let from = mesh.stdout.length;
    const lines = () => reloadLines(parsed(mesh).slice(from));

    writeFileSync(mesh.configFile, half);
    await until(() => lines().length > 0, PICKUP_MS, 'the refusal of the half-written file');
    expect(lines()).toEqual([
      expect.objectContaining({ msg: 'config reload refused; keeping the running config', trigger: 'file' }),
    ]);
    expect(String(lines()[0]!.reason)).toContain('routes[0].upstream: required');
    expect(await metric(mesh.admin, FAILED)).toBe(1);
    expect(await answeredBy(mesh.outbound, '/', 'users')).toBe(a.port);

    from = mesh.stdout.length;
    writeFileSync(mesh.configFile, '');
    await until(() => lines().length > 0, PICKUP_MS, 'the refusal of the empty file');
    expect(lines()).toEqual([
      expect.objectContaining({ msg: 'config reload refused; keeping the running config', trigger: 'file' }),
    ]);
    expect(String(lines()[0]!.reason)).toContain('empty');
    expect(await metric(mesh.admin, FAILED)).toBe(2);
    // The refused text again: not refused (nor logged) again.
    const now = new Date();
    utimesSync(mesh.configFile, now, now);
    await sleep(QUIET_MS);
    expect(lines()).toHaveLength(1);
    // A SIGHUP on the empty file is refused the same way (not applied as an all-default config), and /config says so.
    mesh.proc.kill('SIGHUP');
    await until(() => lines().length > 1, PICKUP_MS, 'the SIGHUP refusal of the empty file');
    expect(lines()[1]).toEqual(
      expect.objectContaining({
        msg: 'config reload refused; keeping the running config',
        trigger: 'signal',
      }),
    );
    expect(String(lines()[1]!.reason)).toContain('empty');
    expect(await metric(mesh.admin, FAILED)).toBe(3);
    const view = (await (await fetch(`${mesh.admin}/config`)).json()) as {
      lastReload: { result: string; reason: string };
    };
    expect(view.lastReload).toMatchObject({ result: 'failed', reason: expect.stringContaining('empty') });
    expect(await answeredBy(mesh.outbound, '/', 'users')).toBe(a.port);

    from = mesh.stdout.length;
    writeFileSync(mesh.configFile, complete);
    await until(() => lines().length > 0, PICKUP_MS, 'the complete file applied');
    expect(lines()).toEqual([
      expect.objectContaining({ msg: 'config reloaded', trigger: 'file', result: 'ok' }),
    ]);
    expect(await answeredBy(mesh.outbound, '/', 'users')).toBe(b.port);
    expect(await answeredBy(mesh.outbound, '/v1/x')).toBe(b.port);
    expect(await metric(mesh.admin, FAILED)).toBe(3);
    expect(await metric(mesh.admin, OK)).toBe(1);
  });

  it('a file change and a SIGHUP at the same moment reload once (trigger "signal"); SIGHUP alone still reloads an unchanged file', async ({
    onTestFinished,
  }: TestContext) => {
    const mesh = await spawnMeshlet({
      registry: { type: 'static', endpoints: { users: [a.endpoint] } },
      listeners: { adminGrpc: { enabled: false } },
    } as never);
    onTestFinished(killer(mesh));
    let from = mesh.stdout.length;
    const lines = () => reloadLines(parsed(mesh).slice(from));

    writeFileSync(mesh.configFile, version(1, boundListeners(mesh)));
    mesh.proc.kill('SIGHUP');
    await until(() => lines().length > 0, PICKUP_MS, 'the reload');
    await sleep(QUIET_MS);
    expect(lines()).toEqual([
      expect.objectContaining({ msg: 'config reloaded', trigger: 'signal', result: 'ok' }),
    ]);
    expect(await answeredBy(mesh.outbound, '/', 'users')).toBe(b.port);

    from = mesh.stdout.length;
    mesh.proc.kill('SIGHUP');
    await until(() => lines().length > 0, PICKUP_MS, 'the SIGHUP reload');
    expect(lines()).toEqual([expect.objectContaining({ msg: 'config reloaded', trigger: 'signal' })]);
    expect(await metric(mesh.admin, OK)).toBe(2);
  });

  it('the daemon image loads neither zod nor yaml for the watch, a touch or an unchanged save; the first change loads them', async ({
    onTestFinished,
  }: TestContext) => {
    const log = writeConfig('', 'modules.log');
    // The recorder goes in this meshlet's environment only (not process.env: the other cases spawn meanwhile).
    const configFile = writeConfig({
      registry: { type: 'static', endpoints: { users: [a.endpoint] } },
      listeners: { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } },
    } as never);
    const m = await spawnOn(configFile, {
      env: { MESHLET_TEST_MODULE_LOG: log, NODE_OPTIONS: `--import ${RECORD_MODULES}` },
    });
    onTestFinished(m.kill);
    const text = readFileSync(configFile, 'utf8');
    writeFileSync(configFile, text);
    const now = new Date();
    utimesSync(configFile, now, now);
    await sleep(QUIET_MS);
    expect(reloadLines(m.logs)).toEqual([]);
    const loaded = readFileSync(log, 'utf8');
    expect(loaded).toMatch(/config-watch\.(ts|js)\n/); // the recorder saw the watch load
    const parser = loaded.split('\n').findIndex((l) => /node_modules\/(zod|yaml)\//.test(l));
    expect(parser, `loaded after ${loaded.split('\n')[parser - 1]}`).toBe(-1);

    writeFileSync(configFile, version(1, m.listeners));
    await until(() => reloadLines(m.logs).length > 0, PICKUP_MS, 'the reload');
    expect(await answeredBy(m.outbound, '/', 'users')).toBe(b.port);
    expect(readFileSync(log, 'utf8')).toMatch(/node_modules\/zod\//);
  });
});
