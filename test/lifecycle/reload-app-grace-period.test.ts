// `meshlet run -- CMD`: a reloaded shutdown.appGracePeriod is the one the app gets at the next stop, as reloaded drainDelay and drainTimeout are.
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { ConfigInput } from '../../src/config/schema.ts';
import { freePorts, runWrapped, writeApp } from './wrapper-helpers.ts';

/** An app that takes `ms` to stop after SIGTERM and lives through SIGHUP (meshlet passes it on). */
const slowToStop = (ms: number) =>
  writeApp(
    `process.on('SIGTERM', () => setTimeout(() => process.exit(0), ${ms}));
     process.on('SIGHUP', () => console.log('{"msg":"app got SIGHUP"}'));
     setInterval(() => {}, 1000);
     console.log('{"msg":"app up"}');`,
  );

const config = (appGracePeriod: string): ConfigInput =>
  freePorts({
    registry: { type: 'static', endpoints: {} },
    accessLog: { enabled: false },
    shutdown: { drainDelay: 0, appGracePeriod },
  });

describe('a reload of shutdown.appGracePeriod under meshlet run -- CMD', () => {
  it('raised by SIGHUP from 300 ms to 10 s: an app that needs 1.2 s to stop is not SIGKILLed; exit 0', async () => {
    const run = runWrapped(config('300ms'), [process.execPath, slowToStop(1200)]);
    const file = run.proc.spawnargs[run.proc.spawnargs.indexOf('--config') + 1]!;
    await run.logged('app up');
    writeFileSync(file, stringify(config('10s')));
    run.proc.kill('SIGHUP');
    const reloaded = await run.logged('config reloaded');
    expect(reloaded.result).toBe('ok');
    await run.logged('app got SIGHUP');
    const t0 = Date.now();
    run.proc.kill('SIGTERM');
    const { code, at } = await run.exited;
    expect(code).toBe(0);
    expect(run.logs.find((l) => l.msg === 'stopping the app')?.appGracePeriodMs).toBe(10_000);
    expect(at - t0).toBeGreaterThanOrEqual(1100);
    expect(at - t0).toBeLessThan(6000);
  });

  it('lowered by SIGHUP from 4 s to 300 ms: an app that ignores SIGTERM is SIGKILLed after 300 ms; exit 137', async () => {
    const run = runWrapped(config('4s'), [process.execPath, slowToStop(60_000)]);
    const file = run.proc.spawnargs[run.proc.spawnargs.indexOf('--config') + 1]!;
    await run.logged('app up');
    writeFileSync(file, stringify(config('300ms')));
    run.proc.kill('SIGHUP');
    await run.logged('config reloaded');
    await run.logged('app got SIGHUP');
    const t0 = Date.now();
    run.proc.kill('SIGTERM');
    const { code, at } = await run.exited;
    expect(code).toBe(137);
    expect(run.logs.find((l) => l.msg === 'stopping the app')?.appGracePeriodMs).toBe(300);
    expect(at - t0).toBeGreaterThanOrEqual(250);
    expect(at - t0).toBeLessThan(3000);
  });
});
