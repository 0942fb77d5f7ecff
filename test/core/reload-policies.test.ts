// SIGHUP applies each upstream policy key to running upstreams, shown by real traffic; a key it cannot apply is named.
import { writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import type { ConfigInput } from '../../src/config/schema.ts';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

type UpstreamsInput = NonNullable<ConfigInput['upstreams']>;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

interface UpstreamView {
  loadBalancer: string;
  healthy: number;
  circuitBreaker: string;
  endpoints: { id: string; state: string }[];
}

describe('SIGHUP applies upstream policies to running upstreams', () => {
  /** Holds `/hold` requests until `release()`; answers others at once. */
  const held: ServerResponse[] = [];
  const release = () => {
    for (const res of held.splice(0)) res.end('released');
  };
  let holding: TestUpstream;
  let failing: TestUpstream;
  let ok: TestUpstream;
  let ok2: TestUpstream;
  let unavailable: TestUpstream;
  let slow: TestUpstream;
  let mesh: MeshletProcess;

  /** No breaker, no ejection, one attempt: what every test's upstream starts from but its own key. */
  const plain = {
    retries: { attempts: 1 },
    circuitBreaker: { enabled: false },
    outlierDetection: { enabled: false },
  };
  const base = (): UpstreamsInput => ({
    holding: plain,
    ejecting: { ...plain, outlierDetection: { consecutive5xx: 100, maxEjectionPercent: 50 } },
    breaking: {
      ...plain,
      circuitBreaker: { volumeThreshold: 100, errorThresholdPercentage: 50, resetTimeout: '30s' },
    },
    retrying: plain,
    timing: { ...plain, timeouts: { request: '5s' } },
    balancing: { ...plain, loadBalancer: 'round_robin' },
  });

  beforeAll(async () => {
    holding = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/hold') held.push(res);
      else res.end('ok');
    });
    failing = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(500).end('broken');
    });
    ok = await startUpstream();
    ok2 = await startUpstream();
    unavailable = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(503).end('unavailable');
    });
    slow = await startUpstream((req, res) => {
      req.resume();
      setTimeout(() => res.end('slow'), 400).unref();
    });
    mesh = await spawnMeshlet({ registry: registry(), upstreams: base() });
  });
  afterAll(async () => {
    mesh.proc.kill('SIGKILL');
    release();
    await Promise.all([holding, failing, ok, ok2, unavailable, slow].map((u) => u.close()));
  });

  function registry(): ConfigInput['registry'] {
    return {
      type: 'static',
      endpoints: {
        holding: [holding.endpoint],
        ejecting: [ok.endpoint, failing.endpoint],
        breaking: [failing.endpoint],
        retrying: [unavailable.endpoint],
        timing: [slow.endpoint],
        balancing: [ok.endpoint, ok2.endpoint],
      },
    };
  }

  /** Rewrites the config with `upstreams`, sends SIGHUP, and resolves with the `config reloaded` line. */
  async function reload(upstreams: UpstreamsInput, rest: ConfigInput = {}): Promise<Record<string, unknown>> {
    const listeners = {
      outbound: { port: Number(new URL(mesh.outbound).port) },
      admin: { port: Number(new URL(mesh.admin).port) },
    };
    const reloaded = () => mesh.stdout.filter((l) => l.includes('"config reloaded"'));
    const before = reloaded().length;
    writeFileSync(mesh.configFile, stringify({ ...rest, listeners, registry: registry(), upstreams }));
    mesh.proc.kill('SIGHUP');
    const t0 = performance.now();
    while (reloaded().length === before) {
      if (performance.now() - t0 > 3000) throw new Error('no "config reloaded" within 3 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    return JSON.parse(reloaded()[before]!) as Record<string, unknown>;
  }

  async function send(upstream: string, path = '/', headers: Record<string, string> = {}): Promise<Reply> {
    const res = await request(`${mesh.outbound}${path}`, { headers: { host: upstream, ...headers } });
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  }

  async function view(upstream: string): Promise<UpstreamView> {
    const res = await request(`${mesh.admin}/upstreams`);
    const all = (await res.body.json()) as { upstreams: Record<string, UpstreamView> };
    return all.upstreams[upstream]!;
  }

  async function metrics(): Promise<string> {
    return (await request(`${mesh.admin}/metrics`)).body.text();
  }

  it('limits: a lowered maxConcurrent counts the request held since before the reload, and the next gets 503 overloaded', async () => {
    const first = send('holding', '/hold');
    const second = send('holding', '/hold');
    const t0 = performance.now();
    while (held.length < 2 && performance.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 10));
    expect(held.length).toBe(2); // the default 1024 admitted both
    release();
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);

    const inFlight = send('holding', '/hold');
    while (held.length < 1 && performance.now() - t0 < 6000) await new Promise((r) => setTimeout(r, 10));
    expect(await reload({ ...base(), holding: { ...plain, limits: { maxConcurrent: 1 } } })).toMatchObject({
      result: 'ok',
    });
    const refused = await send('holding', '/');
    expect(refused.status).toBe(503);
    expect(refused.headers['x-meshlet-error']).toBe('overloaded');
    expect(holding.requests.filter((r) => r.url === '/').length).toBe(0);
    release();
    expect((await inFlight).status).toBe(200);
    expect((await send('holding', '/')).status).toBe(200);
  });

  it('outlierDetection: a lowered consecutive5xx ejects on the next failure (counts kept), and turning it off returns the endpoint', async () => {
    for (let i = 0; i < 6; i++) await send('ejecting');
    expect((await view('ejecting')).healthy).toBe(2); // 3 failures < 100

    await reload({
      ...base(),
      ejecting: { ...plain, outlierDetection: { consecutive5xx: 4, maxEjectionPercent: 50 } },
    });
    const seen = failing.requests.length;
    for (let i = 0; i < 2; i++) await send('ejecting');
    expect(failing.requests.length).toBe(seen + 1); // the 4th consecutive 500 ejected it
    const ejected = await view('ejecting');
    expect(ejected.healthy).toBe(1);
    expect(ejected.endpoints.find((e) => e.id === failing.endpoint)?.state).toBe('ejected');
    for (let i = 0; i < 4; i++) expect((await send('ejecting')).status).toBe(200);
    expect(failing.requests.length).toBe(seen + 1);

    await reload({ ...base(), ejecting: { ...plain, outlierDetection: { enabled: false } } });
    const back = await view('ejecting');
    expect(back.healthy).toBe(2);
    expect(back.endpoints.find((e) => e.id === failing.endpoint)?.state).toBe('healthy');
  });

  it('circuitBreaker: a lowered volumeThreshold opens on the next failure (outcomes kept), and a later change keeps it open', async () => {
    for (let i = 0; i < 4; i++) expect((await send('breaking')).status).toBe(500);
    expect((await view('breaking')).circuitBreaker).toBe('closed');

    const breaker = { volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeout: '30s' };
    await reload({ ...base(), breaking: { ...plain, circuitBreaker: breaker } });
    expect((await send('breaking')).status).toBe(500); // the 5th failure in the window
    const refused = await send('breaking');
    expect(refused.status).toBe(503);
    expect(refused.headers['x-meshlet-error']).toBe('circuit_open');

    await reload({ ...base(), breaking: { ...plain, circuitBreaker: { ...breaker, resetTimeout: '60s' } } });
    expect((await view('breaking')).circuitBreaker).toBe('open');
    expect((await send('breaking')).headers['x-meshlet-error']).toBe('circuit_open');
  });

  it('retries: a new attempts count shows in x-meshlet-attempts and in what the upstream sees', async () => {
    const before = unavailable.requests.length;
    const once = await send('retrying');
    expect([once.status, once.headers['x-meshlet-attempts']]).toEqual([503, '1']);
    expect(unavailable.requests.length).toBe(before + 1);

    await reload({
      ...base(),
      retrying: { ...plain, retries: { attempts: 3, backoff: { base: '1ms', max: '5ms' } } },
    });
    const thrice = await send('retrying');
    expect([thrice.status, thrice.headers['x-meshlet-attempts']]).toEqual([503, '3']);
    expect(unavailable.requests.length).toBe(before + 4);
  });

  it('timeouts: a shorter request timeout, then a shorter perTry, turn a 400 ms answer into 504 upstream_timeout', async () => {
    expect((await send('timing')).status).toBe(200);

    await reload({ ...base(), timing: { ...plain, timeouts: { request: '150ms' } } });
    let t0 = performance.now();
    const overall = await send('timing');
    expect([overall.status, overall.headers['x-meshlet-error']]).toEqual([504, 'upstream_timeout']);
    expect(performance.now() - t0).toBeLessThan(380);

    await reload({ ...base(), timing: { ...plain, timeouts: { request: '5s', perTry: '100ms' } } });
    t0 = performance.now();
    const perTry = await send('timing');
    expect([perTry.status, perTry.headers['x-meshlet-error']]).toEqual([504, 'upstream_timeout']);
    expect(performance.now() - t0).toBeLessThan(380);

    await reload(base());
    expect((await send('timing')).status).toBe(200);
  });

  it('loadBalancer: round_robin → ring_hash changes /upstreams and the distribution', async () => {
    const ports = async (headers: Record<string, string>) => {
      const out: string[] = [];
      for (let i = 0; i < 8; i++)
        out.push(String((await send('balancing', '/', headers)).headers['x-upstream-port']));
      return new Set(out);
    };
    expect((await view('balancing')).loadBalancer).toBe('round_robin');
    expect((await ports({ 'x-user': 'ada' })).size).toBe(2);

    await reload({
      ...base(),
      balancing: { ...plain, loadBalancer: 'ring_hash', hashOn: { header: 'x-user' } },
    });
    expect((await view('balancing')).loadBalancer).toBe('ring_hash');
    expect((await ports({ 'x-user': 'ada' })).size).toBe(1);
  });

  it('a changed per-upstream port cannot be applied: named in the log, counted as partial and by key', async () => {
    const port = await closedPort();
    const line = await reload({ ...base(), holding: { ...plain, port } });
    expect(line).toMatchObject({ result: 'partial', notApplied: ['upstreams.holding.port'] });
    const warnings = mesh.stdout.filter((l) => l.includes('listener changes need a restart'));
    expect(warnings.length).toBe(1);
    expect(JSON.parse(warnings[0]!).keys).toEqual(['upstreams.holding.port']);
    const text = await metrics();
    expect(text).toMatch(/^meshlet_config_reloads_total\{source="config",result="partial"\} 1$/m);
    expect(text).toMatch(/^meshlet_config_keys_not_applied_total\{key="upstreams.holding.port"\} 1$/m);
    expect((await send('holding')).status).toBe(200); // everything else still applied
  });

  it('Node process series are exported without the GC histogram; turning it on is named as needing a restart', async () => {
    const before = await metrics();
    expect(before).toMatch(/^meshlet_nodejs_eventloop_lag_seconds \d/m);
    expect(before).toMatch(/^meshlet_process_cpu_user_seconds_total \d/m);
    expect(before).toMatch(/^meshlet_nodejs_heap_space_size_used_bytes\{space="old"\} \d/m);
    expect(before).not.toMatch(/meshlet_nodejs_gc_duration_seconds/);
    const line = await reload(base(), { metrics: { gcDurations: true } });
    expect(line.result).toBe('partial');
    expect(line.notApplied).toContain('metrics.gcDurations');
    const after = await metrics();
    expect(after).toMatch(/^meshlet_config_keys_not_applied_total\{key="metrics.gcDurations"\} 1$/m);
    expect(after).not.toMatch(/meshlet_nodejs_gc_duration_seconds/);
  });
});
