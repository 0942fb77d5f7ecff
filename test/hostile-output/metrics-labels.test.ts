// /metrics under hostile callers: no label value comes from a request, the exposition stays valid, and new values add no series.
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { mint } from '../gateway/fixtures.ts';
import { h2Request } from '../helpers/h2-request.ts';
import { sampleLines, scrapeMetrics } from '../helpers/metrics.ts';
import { rawExchange } from '../helpers/raw-http.ts';
import { JWT_SECRET, type Mesh, meshForSuite } from './two-meshlets.ts';

/** Whether promtool (Prometheus' own checker) is on this machine. */
const PROMTOOL = spawnSync('promtool', ['--version']).status === 0;

/** One exposition sample line: `name{label="value",…} number`, label values escaped as the format says. */
const SAMPLE =
  /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? [-+0-9.eEInfNa]+$/;

/** Checks an exposition with promtool when installed, else line by line against {@link SAMPLE}. */
function checkExposition(text: string): void {
  if (PROMTOOL) {
    // promtool exits non-zero, with the reason on stderr, on a format or lint error.
    execFileSync('promtool', ['check', 'metrics'], { input: text, timeout: 10_000 });
    return;
  }
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    expect(line).toMatch(SAMPLE);
  }
}

/** Series (name and labels, without the value) of an exposition. */
const seriesOf = (text: string): Set<string> =>
  new Set(sampleLines(text).map((line) => line.slice(0, line.lastIndexOf(' '))));

/** Every request shape a caller controls the values of, each with `tag` in its caller-chosen values. */
async function hostileRound(mesh: Mesh, tag: string): Promise<void> {
  const h2c = `http://127.0.0.1:${mesh.outboundPort}`;
  // HTTP/2: an invented method, path and ids; a gRPC call to an invented service and method.
  await h2Request(h2c, {
    ':method': `HOSTILE${tag}`,
    ':path': `/p/${tag}`,
    ':authority': 'orders',
    'x-request-id': tag,
  });
  await h2Request(h2c, {
    ':method': 'POST',
    ':path': `/hostile${tag}.Svc/Call${tag}`,
    ':authority': 'orders',
    'content-type': 'application/grpc',
    te: 'trailers',
    traceparent: `00-${tag}`,
  });
  // HTTP/1.1: an unknown destination (no route), a path and id of the caller's, an endpoint answering 999.
  for (const [host, path] of [
    [`hostile${tag}`, '/'],
    ['orders', `/hostile${tag}?x=${tag}`],
    ['odd', `/hostile${tag}`],
  ]) {
    const reply = await rawExchange(
      mesh.outboundPort,
      `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nx-request-id: hostile${tag}\r\nConnection: close\r\n\r\n`,
    );
    expect(reply.startsWith('HTTP/1.1 ')).toBe(true);
  }
  // Gateway: no route, and a token naming a tenant nobody configured.
  const gw = `http://127.0.0.1:${mesh.gatewayPort}`;
  expect((await (await request(`${gw}/hostile${tag}`)).body.text()).length).toBeGreaterThan(0);
  const token = await mint(JWT_SECRET, { sub: `hostile${tag}`, tenant: `hostile${tag}` });
  const res = await request(`${gw}/me/${tag}`, { headers: { authorization: `Bearer ${token}` } });
  await res.body.dump();
  expect(res.statusCode).toBe(200);
}

const mesh = meshForSuite();

describe('/metrics under hostile callers', () => {
  it('stays valid exposition, holds no caller value, and a second round of new values adds no series', async () => {
    await hostileRound(mesh, 'one');
    const firstA = await scrapeMetrics(mesh.a.admin);
    const firstB = await scrapeMetrics(mesh.b.admin);
    await hostileRound(mesh, 'two');
    const secondA = await scrapeMetrics(mesh.a.admin);
    const secondB = await scrapeMetrics(mesh.b.admin);
    for (const text of [firstA, firstB, secondA, secondB]) {
      checkExposition(text);
      expect(text).not.toMatch(/hostile/i);
    }
    expect([...seriesOf(secondA)].filter((s) => !seriesOf(firstA).has(s))).toEqual([]);
    expect([...seriesOf(secondB)].filter((s) => !seriesOf(firstB).has(s))).toEqual([]);
    // The odd answers are counted in the fixed label sets: 999 as 5xx, an unknown tenant as `other`.
    expect(secondA).toMatch(
      /meshlet_requests_total\{direction="outbound",upstream="odd",status_class="5xx"\} 2/,
    );
    expect(secondA).toMatch(/meshlet_gateway_requests_total\{route="[^"]+",auth="ok",tenant="other"\} 2/);
  });
});
