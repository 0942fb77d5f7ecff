// `meshlet run -- CMD`: what the app left in its process group is stopped with it (dumb-init's rule), never left behind.
import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { writeConfig } from '../helpers/meshlet.ts';
import { runWrapped, until, writeApp } from './wrapper-helpers.ts';

/**
 * An app that starts a child in its own process group (as `sh -c 'worker & server'` does), waits
 * until the child runs, logs `app up`, then with MODE=exit exits 3 at once, else exits 0 on SIGTERM.
 * The child writes `child PID` and, on SIGTERM, `child SIGTERM` to APP_OUT; with CHILD_IGNORES=1
 * it stays.
 */
const FORKING_APP = `
import { spawn } from 'node:child_process';
const child = spawn(process.execPath, ['-e', \`
  const fs = require('node:fs');
  process.on('SIGTERM', () => {
    fs.appendFileSync(process.env.APP_OUT, 'child SIGTERM\\\\n');
    if (process.env.CHILD_IGNORES !== '1') process.exit(0);
  });
  fs.appendFileSync(process.env.APP_OUT, 'child ' + process.pid + '\\\\n');
  setInterval(() => {}, 1000);
  process.send('up');
\`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
child.once('message', () => {
  child.disconnect();
  child.unref();
  console.log('{"msg":"app up"}');
  if (process.env.MODE === 'exit') process.exit(3);
});
process.on('SIGTERM', () => process.exit(0));
setInterval(() => {}, 1000);
`;

/** Whether `pid` runs (exists and is not a zombie). */
function alive(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (existsSync('/proc/self/stat')) {
    try {
      return !/^\d+ \(.*\) Z /.test(readFileSync(stat, 'utf8'));
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The child's pid as the app's child wrote it, once it is there. */
async function childPid(out: string): Promise<number> {
  await until(() => /child (\d+)/.test(readFileSync(out, 'utf8')), 10_000, 'the child started');
  return Number(/child (\d+)/.exec(readFileSync(out, 'utf8'))![1]);
}

describe('meshlet run -- CMD: the app’s process group', () => {
  const started: number[] = [];
  afterEach(() => {
    for (const pid of started.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });

  it('the app exits on its own leaving a child in its group: the child gets SIGTERM and is gone when meshlet exits with the app’s code', async () => {
    const out = writeConfig('', 'signals.log');
    const run = runWrapped(
      { registry: { type: 'static', endpoints: {} }, shutdown: { drainDelay: '3s', appGracePeriod: '5s' } },
      [process.execPath, writeApp(FORKING_APP)],
      { env: { APP_OUT: out, MODE: 'exit' } },
    );
    started.push(run.proc.pid!);
    const pid = await childPid(out);
    started.push(pid);
    const { code } = await run.exited;
    expect(code).toBe(3);
    expect(readFileSync(out, 'utf8')).toContain('child SIGTERM');
    await until(() => !alive(pid), 1000, 'the child is gone');
  });

  it('SIGTERM: the app exits but its child ignores SIGTERM; the child is SIGKILLed after shutdown.appGracePeriod, before meshlet exits with the app’s code', async () => {
    const out = writeConfig('', 'signals.log');
    const appGracePeriod = 700;
    const run = runWrapped(
      { registry: { type: 'static', endpoints: {} }, shutdown: { drainDelay: 0, appGracePeriod } },
      [process.execPath, writeApp(FORKING_APP)],
      { env: { APP_OUT: out, CHILD_IGNORES: '1' } },
    );
    started.push(run.proc.pid!);
    const pid = await childPid(out);
    started.push(pid);
    await run.logged('app up');
    const t0 = Date.now();
    run.proc.kill('SIGTERM');
    const { code, at } = await run.exited;
    expect(code).toBe(0);
    expect(readFileSync(out, 'utf8')).toContain('child SIGTERM');
    await until(() => !alive(pid), 500, 'the child is gone');
    expect(at - t0).toBeGreaterThanOrEqual(appGracePeriod - 50);
    expect(at - t0).toBeLessThan(appGracePeriod + 2000);
  });
});
