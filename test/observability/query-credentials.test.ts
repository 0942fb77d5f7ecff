// Credentials in a query string (`?access_token=…`) never reach a log line, while the request goes upstream unchanged.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { AccessLog, redactQuery } from '../../src/telemetry/access-log.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { gatewayUrl } from '../gateway/fixtures.ts';

/** A query holding one secret per well-known credential parameter, and two ordinary parameters. */
const QUERY =
  '?page=2&access_token=SECRET-A&id_token=SECRET-B&refresh_token=SECRET-C&api_key=SECRET-D' +
  '&apikey=SECRET-E&token=SECRET-F&password=SECRET-G&secret=SECRET-H&q=hello';
const REDACTED_QUERY =
  '?page=2&access_token=[redacted]&id_token=[redacted]&refresh_token=[redacted]&api_key=[redacted]' +
  '&apikey=[redacted]&token=[redacted]&password=[redacted]&secret=[redacted]&q=hello';

/** Waits (≤ 2 s) for an access line whose path starts with `prefix`. */
async function accessLine(m: InProcessMeshlet, prefix: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const line = m.logs.find((l) => l.msg === 'access' && String(l.path).startsWith(prefix));
    if (line !== undefined) return line;
    if (Date.now() > deadline) throw new Error(`no access line for ${prefix} within 2 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('credentials in the query string, with a real meshlet', () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { web: [upstream.endpoint], down: [] } },
      accessLog: { enabled: true, sampleRate: 1 },
      gateway: { routes: [{ match: { pathPrefix: '/pub/' }, upstream: 'web' }] },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  it('gateway: the access line shows every credential parameter as [redacted]; the upstream gets the query as sent', async () => {
    const res = await request(`${gw}/pub/a${QUERY}`);
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(await res.body.text()).url).toBe(`/pub/a${QUERY}`);
    const line = await accessLine(m, '/pub/a');
    expect(line.path).toBe(`/pub/a${REDACTED_QUERY}`);
    expect(line.status).toBe(200);
    expect(JSON.stringify(m.logs)).not.toContain('SECRET-');
  });

  it('outbound (sidecar): the same, on the app → meshlet path; a WebSocket-style ?token= on a refused request too', async () => {
    const res = await request(`${m.outbound}/b${QUERY}`, { headers: { host: 'web' } });
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(await res.body.text()).url).toBe(`/b${QUERY}`);
    expect((await accessLine(m, '/b')).path).toBe(`/b${REDACTED_QUERY}`);
    // An upstream with no endpoint: meshlet answers itself (503), and that line is always written.
    const refused = await request(`${m.outbound}/c?Access_Token=SECRET-X`, { headers: { host: 'down' } });
    await refused.body.text();
    expect(refused.statusCode).toBe(503);
    const line = await accessLine(m, '/c');
    expect(line.error).toBe('no_healthy_endpoints');
    expect(line.path).toBe('/c?Access_Token=[redacted]');
    expect(JSON.stringify(m.logs)).not.toContain('SECRET-');
  });

  it('disguised names are read as a framework would: case, percent-encoding, brackets, ";" separators', async () => {
    const sent =
      '/pub/d?ACCESS_TOKEN=S1&acc%65ss_token=S2&%41pi_Key=S7&api_key[]=S3&user[password]=S4&a=1;token=S5&X-Api-Key=S6';
    const res = await request(`${gw}${sent}`);
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(await res.body.text()).url).toBe(sent);
    const line = await accessLine(m, '/pub/d');
    expect(line.path).toBe(
      '/pub/d?ACCESS_TOKEN=[redacted]&acc%65ss_token=[redacted]&%41pi_Key=[redacted]&api_key[]=[redacted]' +
        '&user[password]=[redacted]&a=1;token=[redacted]&X-Api-Key=[redacted]',
    );
  });
});

describe('redactQuery', () => {
  it('leaves a path without credentials as it is (the same string)', () => {
    for (const p of [
      '/',
      '/a/b',
      '/a?',
      '/a?x=1&y=2',
      '/a?token',
      '/a?token=',
      '/a?=v',
      '/a?tokens=1',
      '/a?&&',
    ])
      expect(redactQuery(p)).toBe(p);
  });

  it('redacts each credential value, repeated names included, and keeps the separators', () => {
    expect(redactQuery('/a?token=1&token=2&x=3')).toBe('/a?token=[redacted]&token=[redacted]&x=3');
    expect(redactQuery('/a?x=1&secret=a=b&')).toBe('/a?x=1&secret=[redacted]&');
    expect(redactQuery('/a?client_secret=s&key=k&sig=z')).toBe(
      '/a?client_secret=[redacted]&key=[redacted]&sig=[redacted]',
    );
  });

  // Its cost on such a query is a micro-benchmark (bench/micro.ts, "access log"), not a timed test.
  it('redacts the credential at the end of a long hostile query and keeps every other byte', () => {
    const hostile = `/a?${'x&'.repeat(200_000)}token=1`;
    const out = redactQuery(hostile);
    expect(out).toBe(`/a?${'x&'.repeat(200_000)}token=[redacted]`);
  });

  it('inbound lines (a peer meshlet calling this instance) are redacted too', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const access = new AccessLog(createLogger('info', sink), { enabled: true, sampleRate: 1 });
    access.inbound(
      'r1',
      'spiffe://mesh/svc/web',
      '01',
      'GET',
      '/x?id_token=SECRET-I',
      'users',
      200,
      1,
      undefined,
    );
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!).path).toBe('/x?id_token=[redacted]');
  });
});
