// A reload that removes a gateway tenant drops its metric series on every route; a route removed by a later reload leaves none of them.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { ConfigInput } from '../../src/config/schema.ts';
import { hashApiKey } from '../../src/gateway/api-key-authenticator.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call } from './fixtures.ts';
import { GATEWAY_LISTENERS, type ReloadableGateway, startReloadableGateway } from './reloadable-gateway.ts';

describe('gateway tenant series across reloads', () => {
  let upstream: TestUpstream;
  let g: ReloadableGateway;
  let keysFile: string;

  /** Routes `stays` and (when `withGone`) `gone`, each with a route limit; tenant `globex`, and `acme` when `withAcme`. */
  const config = (withAcme: boolean, withGone: boolean): ConfigInput => {
    const route = (name: string) => ({
      name,
      match: { pathPrefix: `/${name}/` },
      upstream: 'web',
      auth: ['keys'],
      rateLimit: { perSecond: 0.001, burst: 1, by: 'key' as const },
    });
    return {
      listeners: GATEWAY_LISTENERS,
      registry: { endpoints: { web: [upstream.endpoint] } },
      gateway: {
        auth: { keys: { type: 'apiKey', file: keysFile } },
        routes: [route('stays'), ...(withGone ? [route('gone')] : [])],
        tenants: { globex: {}, ...(withAcme ? { acme: {} } : {}) },
      },
    };
  };

  const scrape = (): Promise<string[]> => g.series('tenant');

  /** One request let through and one refused with 429 on route `name` with API key `key`. */
  const exercise = async (name: string, key: string): Promise<void> => {
    expect((await call(g.gw, `/${name}/a`, { 'x-api-key': key })).status).toBe(200);
    expect((await call(g.gw, `/${name}/a`, { 'x-api-key': key })).status).toBe(429);
  };

  /** What {@link exercise} leaves exported for route `route` and tenant label `tenant`. */
  const seriesOf = (route: string, tenant: string): string[] => [
    `meshlet_gateway_rate_limited_total{route="${route}",limit="route",tenant="${tenant}"} 1`,
    `meshlet_gateway_requests_total{route="${route}",auth="ok",tenant="${tenant}"} 2`,
  ];

  beforeAll(async () => {
    upstream = await startUpstream();
    const dir = tempDir('meshlet-gw-retired-tenant-');
    keysFile = join(dir, 'api-keys.yaml');
    const keys = [
      { name: 'acme-app', sha256: hashApiKey('key-acme'), tenant: 'acme' },
      { name: 'globex-app', sha256: hashApiKey('key-globex'), tenant: 'globex' },
    ];
    writeFileSync(keysFile, stringify({ keys }));
    g = await startReloadableGateway(config(true, true), dir);
  });
  afterAll(async () => {
    await g?.close();
    await upstream?.close();
  });

  it('a removed tenant loses its series on every route; the tenant that remains keeps its own', async () => {
    for (const route of ['stays', 'gone'])
      for (const t of ['acme', 'globex']) await exercise(route, `key-${t}`);
    const globex = [...seriesOf('gone', 'globex'), ...seriesOf('stays', 'globex')];
    expect(await scrape()).toEqual(
      [...seriesOf('gone', 'acme'), ...seriesOf('stays', 'acme'), ...globex].sort(),
    );

    // The reload removes tenant acme (both routes stay).
    expect(await g.reload(config(false, true))).toBe(true);
    expect(await scrape()).toEqual(globex.sort());

    // A later reload removes route `gone`: no acme series is left behind on it.
    expect(await g.reload(config(false, false))).toBe(true);
    expect(await scrape()).toEqual(seriesOf('stays', 'globex').sort());

    // acme's caller now counts as `other`.
    await exercise('stays', 'key-acme');
    expect(await scrape()).toEqual([...seriesOf('stays', 'globex'), ...seriesOf('stays', 'other')].sort());
  });
});
