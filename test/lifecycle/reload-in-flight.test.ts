// SIGHUP with requests in flight: a changed upstream, a removed one, and refused files (bad YAML, bad schema, a port another process holds).
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { until } from './wrapper-helpers.ts';

/** An upstream that answers `tag` after `ms`. */
function slow(tag: string, ms: number): Promise<TestUpstream> {
  return startUpstream((req, res) => {
    req.resume();
    setTimeout(() => res.end(tag), ms).unref();
  });
}

interface Answer {
  status: number;
  body: string;
  error?: string;
}

/** GET through meshlet to upstream `host`; never rejects (a reset shows as status 0). */
function call(mesh: MeshletProcess, host: string, dispatcher?: Agent): Promise<Answer> {
  return request(`${mesh.outbound}/work`, { headers: { host }, ...(dispatcher ? { dispatcher } : {}) }).then(
    async (res) => ({
      status: res.statusCode,
      body: await res.body.text(),
      ...(res.headers['x-meshlet-error'] === undefined
        ? {}
        : { error: String(res.headers['x-meshlet-error']) }),
    }),
    (err: Error) => ({ status: 0, body: err.message }),
  );
}

/** Counts identical answers: `{"200 a1": 50}`. */
function tally(answers: Answer[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) out[`${a.status} ${a.body}`] = (out[`${a.status} ${a.body}`] ?? 0) + 1;
  return out;
}

/** The listeners block that keeps the running ports (a changed port would need a restart). */
function samePorts(mesh: MeshletProcess): Record<string, unknown> {
  return {
    outbound: { port: Number(new URL(mesh.outbound).port) },
    admin: { port: Number(new URL(mesh.admin).port) },
    adminGrpc: { enabled: false },
  };
}

/** Rewrites the config file, sends SIGHUP and waits for the reload's log line (`config reloaded` or refused). */
async function reload(mesh: MeshletProcess, text: string): Promise<string> {
  const before = mesh.stdout.length;
  writeFileSync(mesh.configFile, text);
  mesh.proc.kill('SIGHUP');
  const line = (): string | undefined =>
    mesh.stdout
      .slice(before)
      .find((l) => l.includes('"config reloaded"') || l.includes('config reload refused'));
  await until(() => line() !== undefined, 5000, 'the reload');
  return line()!;
}

describe('reload with requests in flight', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function meshlet(config: object): Promise<MeshletProcess> {
    const mesh = await spawnMeshlet({ listeners: { adminGrpc: { enabled: false } }, ...config } as never);
    cleanup.push(() => {
      if (mesh.proc.exitCode === null && mesh.proc.signalCode === null) mesh.proc.kill('SIGKILL');
    });
    return mesh;
  }

  async function upstream(tag: string, ms: number): Promise<TestUpstream> {
    const u = await slow(tag, ms);
    cleanup.push(() => u.close());
    return u;
  }

  it('50 slow requests to A, then a reload that moves A to a new endpoint with a 200 ms request timeout and 1 attempt: all 50 finish with the old endpoint’s answer; later requests use the new config', async () => {
    const a1 = await upstream('a1', 1000);
    const a2 = await upstream('a2', 500);
    const mesh = await meshlet({ registry: { type: 'static', endpoints: { a: [a1.endpoint] } } });
    const agent = new Agent({ connections: 64 });
    cleanup.push(() => agent.close());
    const inflight = Array.from({ length: 50 }, () => call(mesh, 'a', agent));
    await until(() => a1.requests.length === 50, 5000, 'all 50 reached a1');

    const line = await reload(
      mesh,
      stringify({
        listeners: samePorts(mesh),
        registry: { type: 'static', endpoints: { a: [a2.endpoint] } },
        upstreams: { a: { timeouts: { request: '200ms' }, retries: { attempts: 1 } } },
      }),
    );
    expect(JSON.parse(line)).toMatchObject({ msg: 'config reloaded', result: 'ok' });
    // The new endpoint and the new timeout: a2 answers after 500 ms, the request timeout is 200 ms.
    const next = await call(mesh, 'a');
    expect(next).toMatchObject({ status: 504, error: 'upstream_timeout' });
    expect(a2.requests.length).toBe(1);
    // The in-flight ones kept the policy they started with (15 s) and their endpoint.
    expect(tally(await Promise.all(inflight))).toEqual({ '200 a1': 50 });
    expect(a1.requests.length).toBe(50);
  });

  it('a reload that removes upstream A while 20 requests are in flight: they finish; a new request gets 503 no_healthy_endpoints (A stays known, as documented)', async () => {
    const a = await upstream('a', 1000);
    const b = await upstream('b', 0);
    const mesh = await meshlet({
      registry: { type: 'static', endpoints: { a: [a.endpoint], b: [b.endpoint] } },
      upstreams: { a: { retries: { attempts: 2 } } },
    });
    const agent = new Agent({ connections: 32 });
    cleanup.push(() => agent.close());
    const inflight = Array.from({ length: 20 }, () => call(mesh, 'a', agent));
    await until(() => a.requests.length === 20, 5000, 'all 20 reached a');

    const line = await reload(
      mesh,
      stringify({ listeners: samePorts(mesh), registry: { type: 'static', endpoints: { b: [b.endpoint] } } }),
    );
    expect(JSON.parse(line)).toMatchObject({ msg: 'config reloaded', result: 'ok' });
    expect(await call(mesh, 'a')).toMatchObject({ status: 503, error: 'no_healthy_endpoints' });
    expect(await call(mesh, 'b')).toEqual({ status: 200, body: 'b' });
    expect(tally(await Promise.all(inflight))).toEqual({ '200 a': 20 });
    // Nothing was sent to a after the reload, and no retry of the drained requests either.
    expect(a.requests.length).toBe(20);
  });

  it('bad YAML, a schema error and a port another process holds: meshlet keeps its config and listeners, says why, counts it, /config shows it; requests in flight and after are served', async () => {
    const a = await upstream('a', 300);
    const mesh = await meshlet({ registry: { type: 'static', endpoints: { a: [a.endpoint] } } });
    const other: Server = createServer();
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => other.close(() => r())));
    const taken = (other.address() as { port: number }).port;
    const good = { listeners: samePorts(mesh), registry: { type: 'static', endpoints: { a: [a.endpoint] } } };
    const lastReload = async (): Promise<{ result: string; reason?: string; notApplied?: string[] }> =>
      ((await (await request(`${mesh.admin}/config`)).body.json()) as { lastReload: never }).lastReload;

    const cases = [
      {
        text: 'registry: {type: static\n  endpoints: [\n',
        log: /config reload refused; keeping the running config.*not valid YAML at line 1/,
        result: 'failed',
      },
      {
        text: stringify({ ...good, upstreams: { a: { retries: { attempts: 'many' } } } }),
        log: /config reload refused; keeping the running config.*upstreams\.a\.retries\.attempts: expected number/,
        result: 'failed',
      },
      {
        // The outbound listener cannot move without a restart: it stays where it is, nothing is bound.
        text: stringify({ ...good, listeners: { ...samePorts(mesh), outbound: { port: taken } } }),
        log: /"config reloaded".*"result":"partial","notApplied":\["listeners\.outbound\.port"\]/,
        result: 'partial',
      },
    ];
    for (const c of cases) {
      const seen = a.requests.length;
      const inflight = call(mesh, 'a');
      await until(() => a.requests.length > seen, 1000, 'the request is in flight');
      expect(await reload(mesh, c.text)).toMatch(c.log);
      expect(mesh.proc.exitCode).toBeNull();
      expect(await inflight).toEqual({ status: 200, body: 'a' });
      expect(await call(mesh, 'a')).toEqual({ status: 200, body: 'a' });
      expect((await lastReload()).result).toBe(c.result);
    }
    expect((await lastReload()).notApplied).toEqual(['listeners.outbound.port']);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_config_reloads_total\{source="config",result="failed"\} 2$/m);
    expect(metrics).toMatch(/^meshlet_config_reloads_total\{source="config",result="partial"\} 1$/m);
    expect(metrics).toMatch(/^meshlet_config_keys_not_applied_total\{key="listeners\.outbound\.port"\} 1$/m);
    expect(mesh.stdout.join('\n')).not.toContain('EADDRINUSE');
  });
});
