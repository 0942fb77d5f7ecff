// Hostile config files: alias bombs, __proto__ keys, colliding listener ports, admin tokens no header can carry; each exits 2 with one line naming the key.
import { describe, expect, it } from 'vitest';
import { runCliToEnd, writeConfig } from '../helpers/meshlet.ts';

/** Both `config check` and `run` refuse the file: exit 2, one line on stderr matching `message`. */
async function refused(text: string, message: RegExp): Promise<void> {
  const file = writeConfig(text);
  const verbs = [
    ['config', 'check', file],
    ['run', '--config', file],
  ];
  const results = await Promise.all(verbs.map((args) => runCliToEnd(args)));
  for (const [i, { code, stderr }] of results.entries()) {
    const args = verbs[i]!;
    const lines = stderr.trim().split('\n');
    expect([args[0], code, lines.length]).toEqual([args[0], 2, 1]);
    expect(lines[0]).toMatch(/^meshlet: invalid config: /);
    expect(lines[0]).toMatch(message);
  }
}

const BOMB = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
  .concat(
    ['b', 'c', 'd', 'e', 'f', 'g'].map(
      (k, i) => `${k}: &${k} [${Array(10).fill(`*${'abcdefg'[i]}`).join(',')}]`,
    ),
  )
  .join('\n');

describe('hostile config files', () => {
  it('a "billion laughs" alias bomb → exit 2 in one line (not a stack trace, not 10^7 nodes)', async () => {
    await refused(`${BOMB}\n`, /not valid YAML: aliases expand too far \(more than 100 alias expansions\)$/);
  });

  it('a few aliases are still fine', async () => {
    const file = writeConfig(
      'upstreams:\n  c: { retries: &retry { attempts: 2 } }\n  a: { retries: *retry }\n  b: { retries: *retry }\n',
    );
    const { code, stdout } = await runCliToEnd(['config', 'check', file]);
    expect(code).toBe(0);
    expect(stdout).toContain('3 upstream(s)');
  });

  it('/dev/zero as the config file → exit 2 "larger than 16 MiB" (not gigabytes of memory)', async () => {
    const verbs = [
      ['config', 'check', '/dev/zero'],
      ['run', '--config', '/dev/zero'],
    ];
    for (const { code, stderr } of await Promise.all(verbs.map((args) => runCliToEnd(args)))) {
      expect(code).toBe(2);
      expect(stderr).toBe(
        'meshlet: invalid config: /dev/zero: cannot read config file: larger than 16 MiB\n',
      );
    }
  });

  it('a 4 MiB file of 80,000 upstreams is checked (the duplicate-key check was quadratic: 38 s)', async () => {
    const lines = ['registry:', '  endpoints:'];
    for (let i = 0; i < 80_000; i++)
      lines.push(`    svc${i}: ["127.0.0.1:${1000 + (i % 60000)}", "127.0.0.2:80"]`);
    const file = writeConfig(`${lines.join('\n')}\n`);
    const { code, stdout } = await runCliToEnd(['config', 'check', file], { timeoutMs: 20_000 });
    expect(code).toBe(0);
    expect(stdout).toContain('80000 upstream(s)');
  });

  it('duplicate keys are still refused with their line, and `1` and "1" are the same key', async () => {
    await Promise.all([
      refused(
        'upstreams:\n  a: {}\n  b: { timeouts: { connect: 1s, connect: 2s } }\n',
        /not valid YAML at line 3, column 33: Map keys must be unique$/,
      ),
      refused(
        'registry:\n  endpoints:\n    "1": ["127.0.0.1:1"]\n    1: ["127.0.0.1:2"]\n',
        /not valid YAML at line 4, column 5: Map keys must be unique$/,
      ),
    ]);
  });

  it('a __proto__ key in a map of names is refused, not dropped without a word', async () => {
    await Promise.all([
      refused('upstreams:\n  __proto__: { port: 9191 }\n', /upstreams\.__proto__: unknown key$/),
      refused(
        'registry:\n  endpoints:\n    __proto__: ["127.0.0.1:1"]\n',
        /registry\.endpoints\.__proto__: unknown key$/,
      ),
    ]);
  });

  it('the gateway listener on a port another listener names → exit 2 naming listeners.gateway.port', async () => {
    await refused(
      'listeners:\n  admin: { port: 25171 }\n  gateway: { port: 25171 }\ngateway:\n  routes: [{ match: { pathPrefix: / }, upstream: users }]\n',
      /listeners\.gateway\.port: port 25171 is already used by listeners\.admin\.port$/,
    );
  });

  it('a listener on 15002 while the gRPC admin API keeps its default port → exit 2 naming listeners.adminGrpc.port', async () => {
    const file = writeConfig('listeners:\n  outbound: { port: 15002 }\n  adminGrpc: { enabled: false }\n');
    const [, off] = await Promise.all([
      refused(
        'listeners:\n  outbound: { port: 15002 }\n',
        /listeners\.adminGrpc\.port: unset, so the gRPC admin API takes 15002, which listeners\.outbound\.port names: set another port, or enabled: false$/,
      ),
      runCliToEnd(['config', 'check', file]),
    ]);
    expect(off.code).toBe(0);
  });

  it.each([
    ['non-ASCII', 'pässwört-token'],
    ['a trailing space (HTTP strips it)', 'abcdefgh-token '],
    ['a control character', 'abcd\\u0007efgh'],
  ])('an admin token with %s → exit 2 naming listeners.admin.token', async (_what, token) => {
    await refused(
      `listeners:\n  admin: { token: "${token}" }\n`,
      /listeners\.admin\.token: expected visible ASCII characters/,
    );
  });
});
