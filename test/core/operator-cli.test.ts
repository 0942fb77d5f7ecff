// Inspecting verbs pointed at the wrong place: a bad --admin is a usage error (exit 2); a server that is not meshlet's admin API is one line and exit 1, never a stack trace.
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, runCliToEnd, startMeshlet } from '../helpers/meshlet.ts';

const VERBS = [
  ['services'],
  ['health'],
  ['breakers'],
  ['upstreams'],
  ['upstreams', '--json'],
  ['upstreams', '--watch'],
];

describe('meshlet verbs against the wrong --admin', () => {
  let mesh: InProcessMeshlet;
  let html: Server;
  let htmlUrl: string;

  beforeAll(async () => {
    mesh = await startMeshlet({
      listeners: { adminGrpc: { enabled: false } },
      registry: { type: 'static', endpoints: { users: ['127.0.0.1:9'] } },
      accessLog: { enabled: false },
    });
    html = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!DOCTYPE html><title>not meshlet</title>');
    });
    await new Promise<void>((r) => html.listen(0, '127.0.0.1', r));
    htmlUrl = `http://127.0.0.1:${(html.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await mesh.close();
    await new Promise((r) => html.close(r));
  });

  it('--admin that is not an http(s) URL → exit 2 naming --admin', async () => {
    const calls = ['not-a-url', 'ftp://127.0.0.1:15000'].flatMap((admin) =>
      [['services'], ['wait', '--timeout', '1s'], ['breakers', 'reset', 'users']].map(async (verb) => {
        const { code, stderr } = await runCliToEnd([...verb, '--admin', admin]);
        expect([verb[0], admin, code]).toEqual([verb[0], admin, 2]);
        expect(stderr).toMatch(/^meshlet: --admin: expected /);
      }),
    );
    await Promise.all(calls);
  });

  it("meshlet's outbound listener (JSON, but a 404 no_route) → exit 1, one line saying what answered", async () => {
    await Promise.all(
      VERBS.map(async (verb) => {
        const { code, stdout, stderr } = await runCliToEnd([...verb, '--admin', mesh.outbound]);
        expect([verb.join(' '), code]).toEqual([verb.join(' '), 1]);
        expect(stdout).toBe('');
        const lines = stderr.trim().split('\n');
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(/answered 404 \(no_route: .*\), not what a meshlet admin API answers/);
      }),
    );
  });

  it('a web server answering HTML → exit 1, one line, no stack', async () => {
    await Promise.all(
      VERBS.map(async (verb) => {
        const { code, stderr } = await runCliToEnd([...verb, '--admin', htmlUrl]);
        expect([verb.join(' '), code]).toEqual([verb.join(' '), 1]);
        expect(stderr.trim().split('\n')).toHaveLength(1);
        expect(stderr).toMatch(/did not answer JSON: is http:\/\/127\.0\.0\.1:\d+ a meshlet admin API\?/);
      }),
    );
  });

  // The last three spawn few CLIs and mostly wait (for a silent port's 1 s): run side by side.
  it.concurrent(
    'wait --timeout 0 asks once: exit 0 when ready (it used to give up before asking)',
    async () => {
      const { code, stderr } = await runCliToEnd(['wait', '--timeout', '0', '--admin', mesh.admin]);
      expect([code, stderr]).toEqual([0, '']);
    },
  );

  it.concurrent('wait against an admin port that never answers says so in words, not "23"', async () => {
    const held: Socket[] = [];
    const silent = createTcpServer((s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const [once, short] = await Promise.all([
        runCliToEnd(['wait', '--timeout', '0', '--admin', url]),
        runCliToEnd(['wait', '--timeout', '300ms', '--admin', url]),
      ]);
      expect(once.code).toBe(1);
      expect(once.stderr).toMatch(/ready\?ignore=app: no answer within 1000 ms\n$/);
      expect(short.code).toBe(1);
      expect(short.stderr).toMatch(/^meshlet: not ready after 300 ms: .*: no answer within \d+ ms\n$/);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it.concurrent('the real admin API still works for every verb', async () => {
    await Promise.all(
      [['services'], ['health'], ['breakers'], ['upstreams']].map(async (verb) => {
        const { code, stdout } = await runCliToEnd([...verb, '--admin', mesh.admin]);
        expect([verb[0], code]).toEqual([verb[0], 0]);
        expect(stdout).toContain('users');
      }),
    );
  });
});
