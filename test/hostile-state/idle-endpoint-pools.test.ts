// Idle endpoints hold no connection pool in a running meshlet: a pool is made on an endpoint's first request.
import { request } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startMeshlet, type InProcessMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

const UPSTREAMS = 20;
const PER_UPSTREAM = 50;

let app: TestUpstream;
let mesh: InProcessMeshlet;

beforeAll(async () => {
  app = await startUpstream();
  const endpoints: Record<string, string[]> = { users: [app.endpoint] };
  for (let u = 0; u < UPSTREAMS; u++) {
    endpoints[`idle${u}`] = Array.from(
      { length: PER_UPSTREAM },
      (_, e) => `127.0.${u}.${e + 2}:${20_000 + e}`,
    );
  }
  mesh = await startMeshlet({
    registry: { type: 'static', endpoints },
    accessLog: { enabled: false },
    shutdown: { drainDelay: 0 },
  });
});

afterAll(async () => {
  await mesh?.close();
  await app?.close();
});

it('1,000 endpoints that carry no traffic hold no pool; requests to one upstream create its one pool', async () => {
  const { table } = mesh.daemon;
  let endpoints = 0;
  let pools = 0;
  for (const upstream of table.values()) {
    endpoints += upstream.endpoints.length;
    pools += upstream.poolCount;
  }
  expect(endpoints).toBe(UPSTREAMS * PER_UPSTREAM + 1);
  expect(pools).toBe(0);

  for (let i = 0; i < 3; i++) {
    const res = await request(`${mesh.outbound}/v1/${i}`, {
      headers: { host: 'users' },
      headersTimeout: 3000,
      bodyTimeout: 3000,
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
  }
  expect(app.requests).toHaveLength(3);
  expect(table.get('users')!.poolCount).toBe(1);
  pools = 0;
  for (const upstream of table.values()) pools += upstream.poolCount;
  expect(pools).toBe(1);
});
