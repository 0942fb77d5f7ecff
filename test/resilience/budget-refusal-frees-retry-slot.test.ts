// A retry the budget refuses gives its maxRetries slot back at once, not after the answer has streamed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { scrapeMetrics, sampleValue } from '../helpers/metrics.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

/** How long the endpoint takes to finish the 503's body on /stingy/, ms. */
const SLOW_BODY_MS = 800;

/** `limits.activeRetries` of upstream `name` from GET /upstreams. */
async function activeRetries(admin: string, name: string): Promise<number> {
  const res = await request(`${admin}/upstreams`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.body.json()) as {
    upstreams: Record<string, { limits: { activeRetries: number } }>;
  };
  return body.upstreams[name]!.limits.activeRetries;
}

describe('a retry refused by the budget and the maxRetries slot', () => {
  const endpoints: TestUpstream[] = [];
  /** Hits of /b/ per path: the first is answered 503, the next 200. */
  const hits = new Map<string, number>();
  let mesh: InProcessMeshlet;
  const agent = new Agent({ connections: 8 });

  beforeAll(async () => {
    for (let i = 0; i < 2; i++) {
      endpoints.push(
        await startUpstream((req, res) => {
          req.resume();
          const url = req.url ?? '';
          if (url.startsWith('/stingy/')) {
            // A 503 whose body takes SLOW_BODY_MS: meshlet passes it on (its retry is refused) as it streams.
            res.writeHead(503, { 'content-type': 'text/plain' });
            res.write('unavailable, ');
            setTimeout(() => res.end('really'), SLOW_BODY_MS).unref();
            return;
          }
          const n = (hits.get(url) ?? 0) + 1;
          hits.set(url, n);
          res.statusCode = n === 1 ? 503 : 200;
          res.end(n === 1 ? 'try again' : 'ok');
        }),
      );
    }
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { svc: endpoints.map((e) => e.endpoint) } },
      upstreams: {
        svc: {
          // maxRetries 0: the bound is one endpoint's share of the requests in flight, ⌈2 ÷ 2⌉ = 1.
          limits: { maxRetries: 0 },
          outlierDetection: { enabled: false },
          circuitBreaker: { enabled: false },
        },
      },
      routes: [
        // Requests on /stingy/ have a budget that allows no retry at all.
        {
          match: { pathPrefix: '/stingy/' },
          upstream: 'svc',
          retries: { budget: { ratio: 0, minRetriesPerSecond: 0 } },
        },
        { match: { pathPrefix: '/b/' }, upstream: 'svc' },
      ],
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await agent.close();
    await Promise.all(endpoints.map((u) => u.close()));
  });

  it('holds no retry slot while the refused answer streams, and a concurrent retry is not refused for it', async () => {
    const t0 = performance.now();
    const stingy = await request(`${mesh.outbound}/stingy/1`, { dispatcher: agent });
    // The endpoint's 503 is passed on after one attempt; its body is still streaming.
    expect(stingy.statusCode).toBe(503);
    expect(stingy.headers['x-meshlet-attempts']).toBe('1');
    expect(stingy.headers['x-meshlet-error']).toBeUndefined();
    const refused = sampleValue(await scrapeMetrics(mesh.admin), 'meshlet_retries_skipped_total', {
      upstream: 'svc',
      why: 'budget-exhausted',
    });
    expect(refused).toBe(1);
    // No retry is in flight: the slot taken before the budget said no was given back (it stayed 1).
    expect(await activeRetries(mesh.admin, 'svc')).toBe(0);
    // Another request's 503 is retried: two requests in flight on two endpoints allow one retry, and
    // the refused one holds none (it was refused with retry-limit and answered 503).
    const b = await request(`${mesh.outbound}/b/1`, { dispatcher: agent });
    const bBody = await b.body.text();
    expect(`${b.statusCode} ${bBody} attempts=${String(b.headers['x-meshlet-attempts'])}`).toBe(
      '200 ok attempts=2',
    );
    // All of this happened while the refused answer was still streaming.
    expect(performance.now() - t0).toBeLessThan(SLOW_BODY_MS);
    expect(await stingy.body.text()).toBe('unavailable, really');
    const after = await scrapeMetrics(mesh.admin);
    expect(sampleValue(after, 'meshlet_retries_skipped_total', { upstream: 'svc', why: 'retry-limit' })).toBe(
      0,
    );
    expect(await activeRetries(mesh.admin, 'svc')).toBe(0);
  });
});
