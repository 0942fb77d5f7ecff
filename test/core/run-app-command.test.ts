// `meshlet run --config FILE -- CMD` with a bad config: exit 2 naming the key, and the app never ran.
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli, writeConfig } from '../helpers/meshlet.ts';

const DAEMON_ENTRY = fileURLToPath(new URL('../../src/cli/daemon-main.ts', import.meta.url));

/** An app that would leave a marker file beside the config if it ever ran. */
function markerApp(config: string): { app: string[]; marker: string } {
  const marker = join(dirname(config), 'app-ran');
  return {
    app: [process.execPath, '-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran')`],
    marker,
  };
}

describe('meshlet run -- CMD with an invalid config', () => {
  it('exits 2 with the bad key; nothing started, the app never ran', async () => {
    const file = writeConfig('listeners: { outbound: { port: "not a port" } }\n');
    const { app, marker } = markerApp(file);
    const { code, stdout, stderr } = await runCli(['run', '--config', file, '--', ...app], 10_000);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^meshlet: invalid config: .*listeners\.outbound\.port/);
    expect(stdout).toBe(''); // no "meshlet started": the daemon never ran
    expect(existsSync(marker)).toBe(false);
  });

  it('the daemon entry (no handover) refuses it the same way before the app starts', async () => {
    const file = writeConfig('listeners: { admin: { port: -1 } }\n');
    const { app, marker } = markerApp(file);
    const args = ['--config', file, '--log-level', 'info', '--', ...app];
    const { code, stderr } = await runCli(args, 10_000, DAEMON_ENTRY);
    expect(code).toBe(2);
    expect(stderr).toMatch(/invalid config: .*listeners\.admin\.port/);
    expect(existsSync(marker)).toBe(false);
  });

  it('"--" with nothing after it is a usage error (exit 2)', async () => {
    const file = writeConfig({ listeners: { outbound: { port: 0 }, admin: { port: 0 } } });
    const { code, stderr } = await runCli(['run', '--config', file, '--'], 10_000);
    expect(code).toBe(2);
    expect(stderr).toMatch(/nothing after "--"/);
  });
});
