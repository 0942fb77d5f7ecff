// Real Prometheus scraping real meshlets (gateway → web → users): every Consul UI query and every Grafana panel query gets the right data.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { CONSUL_UI_SERIES } from '../../src/telemetry/consul-ui-metrics.ts';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { consulRegistry, within } from '../consul/consul-helpers.ts';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { consulUiQueries, type UiQuery } from './consul-ui-queries.ts';

const USERS_DELAY_MS = 30;
const TOTAL = 300;
const ERRORS = 30;
/** Prometheus scrape interval, ms: short, so the waits for a scrape are short (the queries do not depend on it). */
const SCRAPE_MS = 500;

let consul: ConsulDouble;
let usersApp: Server;
let webApp: Server;
const meshlets: MeshletProcess[] = [];
let prom: ChildProcess;
let promUrl: string;
let dir: string;
/** When the last request of the traffic ended (unix ms): the chart is drawn as the UI draws it then. */
let trafficEnd: number;

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

async function freePort(): Promise<number> {
  const s = createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

async function query(q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await request(`${promUrl}/api/v1/query?${new URLSearchParams({ query: q })}`);
  const body = (await res.body.json()) as { status: string; error?: string; data: { result: never[] } };
  if (body.status !== 'success') throw new Error(`${q}: ${body.error}`);
  return body.data.result;
}

/** Resolves once Prometheus holds a scrape of every target that started after `afterMs` (unix ms). */
async function scrapedAfter(afterMs: number, what: string): Promise<void> {
  await within(
    10_000,
    async () => {
      const r = await query('timestamp(up{job="meshlet"})');
      return r.length === 3 && r.every((x) => Number(x.value[1]) * 1000 > afterMs);
    },
    what,
  );
}

beforeAll(async () => {
  dir = tempDir('meshlet-prom-');
  consul = new ConsulDouble();
  await consul.start();
  // users: answers after 30 ms; every 10th request is a 500.
  let n = 0;
  usersApp = createServer((_req, res) => {
    const i = ++n;
    setTimeout(() => {
      res.statusCode = i % 10 === 0 ? 500 : 200;
      res.end('users');
    }, USERS_DELAY_MS);
  });
  const usersPort = await listen(usersApp);
  const common = (name: string, port: number, upstreams: Record<string, unknown>) =>
    ({
      service: { name, port, address: '127.0.0.1' },
      listeners: { inbound: { address: '127.0.0.1', port: 0 } },
      registry: consulRegistry(consul, {
        serviceId: `${name}-1`,
        check: { interval: '500ms', timeout: '400ms' },
      }),
      tls: { source: 'consul' },
      upstreams,
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    }) as never;
  // web: its app calls users through its own meshlet and passes the status on.
  let webOutbound = '';
  webApp = createServer((_req, res) => {
    request(`${webOutbound}/`, { headers: { host: 'users' } }).then(
      async (r) => {
        await r.body.dump();
        res.statusCode = r.statusCode;
        res.end('web');
      },
      () => {
        res.statusCode = 502;
        res.end();
      },
    );
  });
  const webPort = await listen(webApp);
  // Prometheus starts first, discovering its targets from a file written once the meshlets are up,
  // so its start overlaps theirs.
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  const targetsFile = join(dir, 'targets.json');
  const config = [
    `global: { scrape_interval: ${SCRAPE_MS}ms, evaluation_interval: 1s }`,
    'scrape_configs:',
    '  - job_name: meshlet',
    '    file_sd_configs:',
    `      - files: ["${targetsFile}"]`,
    '        refresh_interval: 1s',
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), `${config}\n`);
  execFileSync('promtool', ['check', 'config', join(dir, 'prometheus.yml')]);
  prom = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: 'ignore' },
  );

  // The meshlets start one after the other (side by side, three `meshlet` processes compiling at once
  // on a busy machine can pass spawnMeshlet's 15 s start limit); each one started is stopped in afterAll.
  const users = await spawnMeshlet(common('users', usersPort, {}));
  meshlets.push(users);
  const web = await spawnMeshlet(common('web', webPort, { users: { retries: { attempts: 1 } } }));
  meshlets.push(web);
  const gateway = await spawnMeshlet({
    ...(common('api-gateway', 1, { web: { retries: { attempts: 1 } } }) as object),
    registry: consulRegistry(consul, { register: false }),
  } as never);
  meshlets.push(gateway);
  webOutbound = web.outbound;
  const targets = [
    ['users', users.admin],
    ['web', web.admin],
    ['api-gateway', gateway.admin],
  ].map(([service, admin]) => ({ targets: [admin!.replace('http://', '')], labels: { service } }));
  // Written whole, then renamed: Prometheus never reads half a file.
  writeFileSync(`${targetsFile}.tmp`, JSON.stringify(targets));
  renameSync(`${targetsFile}.tmp`, targetsFile);
  await within(
    20_000,
    async () => (await query('up == 1').catch(() => [])).length === 3,
    'prometheus scraping',
  );
  // Wait for the zeroed series, then for one more scrape of every target: each holds a zero before the traffic.
  await within(
    10_000,
    async () => (await query(`${CONSUL_UI_SERIES.clusterCompleted}`)).length > 0,
    'series',
  );
  await scrapedAfter(Date.now(), 'a scrape of the zeroed series');

  // 300 requests, 30 of them 5xx, gateway → web → users, 10 at a time over a few seconds (several
  // scrapes), so the chart's last step, an irate of the last two scrapes before the traffic ended, sees both.
  for (let i = 0; i < TOTAL / 10; i++) {
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        const r = await request(`${gateway.outbound}/`, { headers: { host: 'web' } });
        await r.body.dump();
      }),
    );
    await new Promise((r) => setTimeout(r, 50));
  }
  trafficEnd = Date.now();
  // Every count is in Prometheus once each target was scraped after the last response (250 ms to spare).
  await scrapedAfter(trafficEnd + 250, 'a scrape after the traffic');
}, 90_000);

afterAll(async () => {
  if (prom?.pid !== undefined && prom.exitCode === null && prom.signalCode === null) {
    const exited = new Promise((r) => prom.once('exit', r));
    prom.kill('SIGTERM');
    const timer = setTimeout(() => prom.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  for (const m of meshlets) {
    m.proc.kill('SIGTERM');
    await m.exited;
  }
  await new Promise((r) => usersApp?.close(r));
  await new Promise((r) => webApp?.close(r));
  await consul?.stop();
}, 30_000);

/** Requests per second the UI's 15 m rate gives for `count` requests. */
const perWindow = (count: number): number => count / 900;

describe('the Consul UI topology queries against meshlet series', () => {
  it('every query the provider issues parses; the L7 ones give the request rate, a 10 % error rate and p50/p99 in ms', async () => {
    const all: UiQuery[] = [
      ...consulUiQueries('web', 'dc1', 'default'),
      ...consulUiQueries('users', 'dc1', 'default'),
    ];
    const results = new Map<string, Awaited<ReturnType<typeof query>>>();
    for (const q of all) results.set(`${q.service} ${q.type} ${q.stat}`, await query(q.promql));
    const one = (key: string, group?: string) => {
      const r = results.get(key)!;
      const row = group === undefined ? r[0] : r.find((x) => Object.values(x.metric).includes(group));
      expect(row, key).toBeDefined();
      return Number(row!.value[1]);
    };
    for (const svc of ['web', 'users']) {
      const rps = one(`${svc} service RPS`);
      expect(rps * 900).toBeGreaterThan(TOTAL * 0.9);
      expect(rps * 900).toBeLessThan(TOTAL * 1.25);
      expect(one(`${svc} service ER`)).toBeCloseTo(ERRORS / TOTAL, 1);
      const p50 = one(`${svc} service P50`);
      const p99 = one(`${svc} service P99`);
      // Milliseconds, not seconds: at least the upstream's delay. The upper bounds only rule out a
      // unit error (a loaded CI machine stretches latencies; timing targets live in the bench).
      expect(p50).toBeGreaterThanOrEqual(USERS_DELAY_MS * 0.8);
      expect(p50).toBeLessThanOrEqual(USERS_DELAY_MS * 20);
      expect(p99).toBeGreaterThanOrEqual(p50);
      expect(p99).toBeLessThanOrEqual(5000);
    }
    // web → users (web's upstreams) and users ← web (users' downstreams), grouped as the UI groups.
    expect(one('web upstream RPS', 'users')).toBeCloseTo(perWindow(TOTAL), 1);
    expect(one('web upstream ER', 'users')).toBeCloseTo(0.1, 1);
    expect(one('web upstream P50', 'users')).toBeGreaterThanOrEqual(USERS_DELAY_MS * 0.8);
    expect(one('users downstream RPS', 'web')).toBeCloseTo(perWindow(TOTAL), 1);
    expect(one('users downstream ER', 'web')).toBeCloseTo(0.1, 1);
    expect(one('users downstream P99', 'web')).toBeGreaterThanOrEqual(USERS_DELAY_MS * 0.8);
    expect(one('users downstream P99', 'web')).toBeLessThanOrEqual(5000);
    expect(one('web downstream RPS', 'api-gateway')).toBeCloseTo(perWindow(TOTAL), 1);
    // L4 stats are for tcp services: meshlet exports none, so the UI shows none (no made-up zeros).
    for (const q of all.filter((x) => x.l4 && x.type !== 'service'))
      expect(results.get(`${q.service} ${q.type} ${q.stat}`)).toEqual([]);

    // The chart: Successes and Errors stacked, over the last 15 minutes at 10 s steps, as the UI
    // draws it when the traffic ended (its last step is an irate of the last two scrapes then).
    for (const svc of ['web', 'users']) {
      const chart = consulUiQueries(svc, 'dc1', 'default').find((q) => q.stat === 'chart')!;
      const now = trafficEnd / 1000;
      const res = await request(
        `${promUrl}/api/v1/query_range?${new URLSearchParams({ query: chart.promql, start: String(now - 900), end: String(now), step: '10s' })}`,
      );
      const body = (await res.body.json()) as {
        data: { result: { metric: { label: string }; values: [number, string][] }[] };
      };
      const byLabel = Object.fromEntries(
        body.data.result.map((r) => [r.metric.label, r.values.map((v) => Number(v[1]))]),
      );
      expect(Object.keys(byLabel).sort()).toEqual(['Errors', 'Successes']);
      expect(Math.max(...byLabel.Successes!)).toBeGreaterThan(0);
      expect(Math.max(...byLabel.Errors!)).toBeGreaterThan(0);
    }
  });

  it('every Grafana panel query in deploy/grafana/meshlet.json returns data', async () => {
    const dash = JSON.parse(
      readFileSync(new URL('../../deploy/grafana/meshlet.json', import.meta.url), 'utf8'),
    ) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    expect(dash.panels.length).toBeGreaterThanOrEqual(15);
    for (const p of dash.panels) {
      for (const t of p.targets) {
        const expr = t.expr
          .replaceAll('$service', '.*')
          .replaceAll('$instance', '.*')
          .replaceAll('$__rate_interval', '1m');
        const r = await query(expr);
        expect(r.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
      }
    }
  });
});
