// A reload that removes or renames gateway routes drops their metric series; those of routes that remain stay.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../src/config/schema.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call } from './fixtures.ts';
import { GATEWAY_LISTENERS, type ReloadableGateway, startReloadableGateway } from './reloadable-gateway.ts';

const ORIGIN = 'https://app.example';

describe('gateway route series across a reload', () => {
  let upstream: TestUpstream;
  let g: ReloadableGateway;

  /** Three routes: `stays`, one named `moving` (renamed by the reload) and `gone` (removed by it, when `withGone`). */
  const config = (moving: string, withGone: boolean): ConfigInput => {
    const limited = { rateLimit: { perSecond: 0.001, burst: 1 }, cors: { origins: [ORIGIN] } };
    return {
      listeners: GATEWAY_LISTENERS,
      registry: { endpoints: { web: [upstream.endpoint] } },
      gateway: {
        routes: [
          { name: 'stays', match: { pathPrefix: '/stays/' }, upstream: 'web', ...limited },
          { name: moving, match: { pathPrefix: '/moving/' }, upstream: 'web', ...limited },
          ...(withGone
            ? [{ name: 'gone', match: { pathPrefix: '/gone/' }, upstream: 'web', ...limited }]
            : []),
        ],
      },
    };
  };

  const scrape = (): Promise<string[]> => g.series('route');

  /** One request let through, one refused with 429, one CORS preflight allowed, on `prefix`. */
  const exercise = async (prefix: string): Promise<void> => {
    expect((await call(g.gw, `${prefix}a`)).status).toBe(200);
    expect((await call(g.gw, `${prefix}a`)).status).toBe(429);
    const preflight = { origin: ORIGIN, 'access-control-request-method': 'GET' };
    expect((await call(g.gw, `${prefix}a`, preflight, 'OPTIONS')).status).toBe(204);
  };

  /** What {@link exercise} leaves exported for route `name`. */
  const seriesOf = (name: string): string[] => [
    `meshlet_gateway_cors_preflights_total{route="${name}",result="allowed"} 1`,
    `meshlet_gateway_rate_limited_total{route="${name}",limit="route",tenant=""} 1`,
    `meshlet_gateway_requests_total{route="${name}",auth="public",tenant=""} 2`,
  ];

  beforeAll(async () => {
    upstream = await startUpstream();
    g = await startReloadableGateway(config('old-name', true));
  });
  afterAll(async () => {
    await g?.close();
    await upstream?.close();
  });

  it('renamed and removed routes lose their series; the one that remains keeps its own', async () => {
    for (const prefix of ['/stays/', '/moving/', '/gone/']) await exercise(prefix);
    expect(await scrape()).toEqual(
      [...seriesOf('gone'), ...seriesOf('old-name'), ...seriesOf('stays')].sort(),
    );

    expect(await g.reload(config('new-name', false))).toBe(true);
    expect(await scrape()).toEqual(seriesOf('stays').sort());

    // The new name counts as the old one did (its bucket is new: a first request goes through).
    await exercise('/moving/');
    expect((await call(g.gw, '/gone/a')).status).toBe(404);
    expect(await scrape()).toEqual([...seriesOf('new-name'), ...seriesOf('stays')].sort());
  });
});

describe('a request in flight on a route a reload removes', () => {
  let upstream: TestUpstream;
  let g: ReloadableGateway;
  /** An identity service that holds each call until the test answers it. */
  const held: ServerResponse[] = [];
  const identity = createServer((req, res) => {
    req.resume();
    held.push(res);
  });

  const config = (withSlow: boolean): ConfigInput => ({
    listeners: GATEWAY_LISTENERS,
    registry: {
      endpoints: {
        web: [upstream.endpoint],
        'identity-service': [`127.0.0.1:${(identity.address() as AddressInfo).port}`],
      },
    },
    gateway: {
      auth: { identity: { type: 'validate', url: 'http://identity-service/auth/validate' } },
      routes: [
        { name: 'stays', match: { pathPrefix: '/stays/' }, upstream: 'web', auth: ['identity'] },
        ...(withSlow
          ? [{ name: 'slow', match: { pathPrefix: '/slow/' }, upstream: 'web', auth: ['identity'] }]
          : []),
      ],
    },
  });

  beforeAll(async () => {
    upstream = await startUpstream();
    await new Promise<void>((r) => identity.listen(0, '127.0.0.1', r));
    g = await startReloadableGateway(config(true));
  });
  afterAll(async () => {
    await g?.close();
    await upstream?.close();
    for (const res of held) res.destroy();
    await new Promise((r) => identity.close(r));
  });

  it('counts nothing once it ends: the retired series does not come back', async () => {
    const pending = call(g.gw, '/slow/a', { authorization: 'Bearer t' });
    while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(await g.reload(config(false))).toBe(true);
    held[0]!.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ user_id: 'u-1' }));
    expect((await pending).status).toBe(200);
    const series = await g.series('route');
    expect(series.filter((l) => l.includes('route="slow"'))).toEqual([]);
    // The request went through (the validate call of the authenticator that stays was counted).
    expect(await (await fetch(`${g.admin}/metrics`)).text()).toContain(
      'meshlet_gateway_validate_calls_total{authenticator="identity",result="allowed"} 1',
    );
  });
});
