// `meshlet run -- CMD`: an app that exits during the drain delay ends the delay; peers are not kept on an instance with no app.
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { writeConfig } from '../helpers/meshlet.ts';
import { runWrapped, writeApp } from './wrapper-helpers.ts';

/** Logs `app up`; exits 9 on its own (standing for a crash) once the file CRASH_FILE exists. */
const CRASHING_APP = `
import { existsSync } from 'node:fs';
console.log('{"msg":"app up"}');
setInterval(() => {
  if (existsSync(process.env.CRASH_FILE)) process.exit(9);
}, 50);
`;

describe('meshlet run -- CMD: the app exits during the drain delay', () => {
  it('the drain delay ends when the app exits, and meshlet exits with its code well before shutdown.drainDelay', async () => {
    const crashFile = `${writeConfig('', 'crash-marker')}.now`;
    const run = runWrapped(
      { registry: { type: 'static', endpoints: {} }, shutdown: { drainDelay: '8s', appGracePeriod: '5s' } },
      [process.execPath, writeApp(CRASHING_APP)],
      { env: { CRASH_FILE: crashFile } },
    );
    try {
      await run.logged('app up');
      process.kill(run.proc.pid!, 'SIGTERM');
      await run.logged('draining');
      const sentAt = Date.now();
      // The app crashes on its own during the delay.
      writeFileSync(crashFile, '');
      const { code, at } = await run.exited;
      expect(code).toBe(9);
      // Without the cut meshlet would wait the whole 8 s drain delay for an app that is gone.
      expect(at - sentAt).toBeLessThan(5000);
      expect(
        run.logs.some(
          (l) => l.msg === 'drain delay cut short: the app exited, nothing is left to serve peers',
        ),
      ).toBe(true);
    } finally {
      if (run.proc.exitCode === null) run.proc.kill('SIGKILL');
    }
  }, 30_000);
});
