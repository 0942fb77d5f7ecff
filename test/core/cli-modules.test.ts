// A CLI verb other than `run` never loads the daemon (daemon.ts and what it imports): each spawn of `config check`, `wait` or `--help` would pay ~250 ms for it.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { CLI } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';

/** Records every module URL the process loads (import and require), written to `$PROBE_OUT` at exit. */
const PROBE = `import { writeFileSync } from 'node:fs';
import { registerHooks } from 'node:module';
const loaded = new Set();
registerHooks({ load(url, context, next) { loaded.add(url); return next(url, context); } });
process.on('exit', () => writeFileSync(process.env.PROBE_OUT, [...loaded].join('\\n')));
`;

/** Runs `meshlet ARGS` with the probe; resolves with the exit code and the `src/` files it loaded. */
async function modulesOf(args: string[]): Promise<{ code: number | null; loaded: string[] }> {
  const dir = tempDir('meshlet-cli-modules-');
  const probe = join(dir, 'probe.mjs');
  const out = join(dir, 'loaded.txt');
  writeFileSync(probe, PROBE);
  const proc = spawn(process.execPath, ['--import', pathToFileURL(probe).href, CLI, ...args], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, PROBE_OUT: out },
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`meshlet ${args.join(' ')} did not exit within 15 s`));
    }, 15_000);
    proc.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  const src = pathToFileURL(join(CLI, '../..')).href;
  const loaded = readFileSync(out, 'utf8')
    .split('\n')
    .filter((url) => url.startsWith(src))
    .map((url) => url.slice(src.length + 1));
  return { code, loaded };
}

describe('CLI verbs load only what they use', () => {
  const config = join(tempDir('meshlet-cli-modules-'), 'meshlet.yaml');
  writeFileSync(config, stringify({ listeners: { outbound: { port: 0 }, admin: { port: 0 } } }));

  it.each([
    ['config check', ['config', 'check', config], 0],
    ['--help', ['--help'], 0],
    ['wait (nothing listening)', ['wait', '--admin', 'http://127.0.0.1:9', '--timeout', '200ms'], 1],
  ] as const)('%s: not the daemon, its listeners or its registries', async (_name, args, exit) => {
    const { code, loaded } = await modulesOf([...args]);
    expect(code).toBe(exit);
    // The probe saw the CLI itself, so an empty list cannot pass for a clean one.
    expect(loaded).toContain('cli/verbs.ts');
    expect(
      loaded.filter((f) => f === 'daemon.ts' || f.startsWith('listener/') || f.startsWith('registry/')),
    ).toEqual([]);
    expect(loaded).not.toContain('cli/run-command.ts');
  });
});
