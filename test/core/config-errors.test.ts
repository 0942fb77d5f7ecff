// Bad config files: the CLI exits 2 with one line naming the key (or the file) and the problem.
import { describe, expect, it } from 'vitest';
import { runCliToEnd, writeConfig } from '../helpers/meshlet.ts';

describe('config errors', () => {
  it.each([
    ['unknown key', 'listeners:\n  outbond: { port: 15001 }\n', /listeners\.outbond: unknown key$/],
    [
      'wrong type',
      'upstreams:\n  users:\n    timeouts: { connect: fast }\n',
      /upstreams\.users\.timeouts\.connect: expected a duration like "250ms", "1s" or "5m", got "fast"$/,
    ],
    [
      'port out of range',
      'listeners:\n  outbound: { port: 70000 }\n',
      /listeners\.outbound\.port: expected a port in 0\.\.65535$/,
    ],
    [
      'bad endpoint',
      'registry:\n  type: static\n  endpoints:\n    users: ["nope"]\n',
      /registry\.endpoints\.users\[0\]: expected "host:port"$/,
    ],
    [
      'a gRPC response hold that is not a duration',
      'upstreams:\n  users:\n    retries: { grpcResponseHold: soon }\n',
      /upstreams\.users\.retries\.grpcResponseHold: expected a duration like "250ms", "1s" or "5m", got "soon"$/,
    ],
    [
      'a GC histogram switch that is not a boolean',
      'metrics: { gcDurations: sometimes }\n',
      /metrics\.gcDurations: expected boolean, received string$/,
    ],
    ['unparsable YAML', 'listeners: [unclosed\n', /not valid YAML at line \d+, column \d+/],
    ['number where a list belongs', 'routes: 5\n', /routes: expected array, received number$/],
    [
      'same port twice',
      'listeners:\n  outbound: { port: 15001 }\n  admin: { port: 15001 }\n',
      /listeners\.admin\.port: port 15001 is already used by listeners\.outbound\.port$/,
    ],
  ])('%s → exit 2 naming the key', async (_name, text, message) => {
    const file = writeConfig(text);
    const verbs = [
      ['config', 'check', file],
      ['run', '--config', file],
    ];
    for (const { code, stderr } of await Promise.all(verbs.map((args) => runCliToEnd(args)))) {
      expect(code).toBe(2);
      const lines = stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^meshlet: invalid config: /);
      expect(lines[0]).toMatch(message);
    }
  });

  it('a missing file → exit 2 naming the file', async () => {
    const { code, stderr } = await runCliToEnd(['run', '--config', '/nonexistent/meshlet.yaml']);
    expect(code).toBe(2);
    expect(stderr.trim()).toBe(
      'meshlet: invalid config: /nonexistent/meshlet.yaml: cannot read config file: no such file',
    );
  });

  it('a valid file → config check exits 0 with a summary', async () => {
    const file = writeConfig('registry:\n  type: static\n  endpoints:\n    users: ["127.0.0.1:9001"]\n');
    const { code, stdout } = await runCliToEnd(['config', 'check', file]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/ok \(1 upstream\(s\), 0 route\(s\), registry static\)/);
  });

  it('bad usage → exit 2; --help on every verb → exit 0', async () => {
    const verbs = [[], ['run'], ['config'], ['config', 'check']];
    const [frobnicate, bareRun, ...helps] = await Promise.all([
      runCliToEnd(['frobnicate']),
      runCliToEnd(['run']),
      ...verbs.map((verb) => runCliToEnd([...verb, '--help'])),
    ]);
    expect(frobnicate.code).toBe(2);
    expect(bareRun.code).toBe(2);
    for (const { code, stdout } of helps) {
      expect(code).toBe(0);
      expect(stdout).toMatch(/meshlet/);
    }
  });

  it('a port already in use → exit 1 (runtime failure)', async () => {
    const { createServer } = await import('node:net');
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    const file = writeConfig(`listeners:\n  outbound: { port: ${port} }\n  admin: { port: 0 }\n`);
    const { code, stderr } = await runCliToEnd(['run', '--config', file]);
    blocker.close();
    expect(code).toBe(1);
    expect(stderr).toMatch(/cannot start: address in use/);
  });
});
