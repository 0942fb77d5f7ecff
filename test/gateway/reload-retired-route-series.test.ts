// A reload that removes or renames gateway routes drops their metric series; those of routes that remain stay.
import { writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl } from './fixtures.ts';

/** The `meshlet_gateway_*` sample lines of `text` that name a route. */
const routeSeries = (text: string): string[] =>
  text
    .split('\n')
    .filter((l) => l.startsWith('meshlet_gateway_') && l.includes('route="'))
    .sort();

const ORIGIN = 'https://app.example';

describe('gateway route series across a reload', () => {
  let upstream: TestUpstream;
  let daemon: Daemon;
  let file: string;
  let gw: string;
  let admin: string;

  /** Three routes: `stays`, one named `moving` (renamed by the reload) and `gone` (removed by it, when `withGone`). */
  const config = (moving: string, withGone: boolean): ConfigInput => {
    const limited = { rateLimit: { perSecond: 0.001, burst: 1 }, cors: { origins: [ORIGIN] } };
    return {
      listeners: {
        outbound: { port: 0 },
        admin: { port: 0 },
        adminGrpc: { enabled: false },
        gateway: { address: '127.0.0.1', port: 0 },
      },
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

  const scrape = async (): Promise<string[]> => routeSeries(await (await fetch(`${admin}/metrics`)).text());

  /** One request let through, one refused with 429, one CORS preflight allowed, on `prefix`. */
  const exercise = async (prefix: string): Promise<void> => {
    expect((await call(gw, `${prefix}a`)).status).toBe(200);
    expect((await call(gw, `${prefix}a`)).status).toBe(429);
    const preflight = { origin: ORIGIN, 'access-control-request-method': 'GET' };
    expect((await call(gw, `${prefix}a`, preflight, 'OPTIONS')).status).toBe(204);
  };

  /** What {@link exercise} leaves exported for route `name`. */
  const seriesOf = (name: string): string[] => [
    `meshlet_gateway_cors_preflights_total{route="${name}",result="allowed"} 1`,
    `meshlet_gateway_rate_limited_total{route="${name}",limit="route",tenant=""} 1`,
    `meshlet_gateway_requests_total{route="${name}",auth="public",tenant=""} 2`,
  ];

  beforeAll(async () => {
    upstream = await startUpstream();
    const dir = tempDir('meshlet-gw-retired-route-');
    file = join(dir, 'meshlet.yaml');
    const input = config('old-name', true);
    writeFileSync(file, stringify(input));
    daemon = await Daemon.start(validateConfig(input), {
      logger: createLogger('error'),
      configFile: file,
      processMetrics: false,
    });
    gw = gatewayUrl(daemon);
    admin = `http://127.0.0.1:${daemon.addresses().admin.port}`;
  });
  afterAll(async () => {
    await daemon?.shutdown('test');
    await upstream?.close();
  });

  it('renamed and removed routes lose their series; the one that remains keeps its own', async () => {
    for (const prefix of ['/stays/', '/moving/', '/gone/']) await exercise(prefix);
    expect(await scrape()).toEqual(
      [...seriesOf('gone'), ...seriesOf('old-name'), ...seriesOf('stays')].sort(),
    );

    writeFileSync(file, stringify(config('new-name', false)));
    expect(await daemon.reload()).toBe(true);
    expect(await scrape()).toEqual(seriesOf('stays').sort());

    // The new name counts as the old one did (its bucket is new: a first request goes through).
    await exercise('/moving/');
    expect((await call(gw, '/gone/a')).status).toBe(404);
    expect(await scrape()).toEqual([...seriesOf('new-name'), ...seriesOf('stays')].sort());
  });
});

describe('a request in flight on a route a reload removes', () => {
  let upstream: TestUpstream;
  let daemon: Daemon;
  let file: string;
  /** An identity service that holds each call until the test answers it. */
  const held: ServerResponse[] = [];
  const identity = createServer((req, res) => {
    req.resume();
    held.push(res);
  });

  const config = (withSlow: boolean): ConfigInput => ({
    listeners: {
      outbound: { port: 0 },
      admin: { port: 0 },
      adminGrpc: { enabled: false },
      gateway: { address: '127.0.0.1', port: 0 },
    },
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
    file = join(tempDir('meshlet-gw-retired-route-late-'), 'meshlet.yaml');
    const input = config(true);
    writeFileSync(file, stringify(input));
    daemon = await Daemon.start(validateConfig(input), {
      logger: createLogger('error'),
      configFile: file,
      processMetrics: false,
    });
  });
  afterAll(async () => {
    await daemon?.shutdown('test');
    await upstream?.close();
    for (const res of held) res.destroy();
    await new Promise((r) => identity.close(r));
  });

  it('counts nothing once it ends: the retired series does not come back', async () => {
    const pending = call(gatewayUrl(daemon), '/slow/a', { authorization: 'Bearer t' });
    while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
    writeFileSync(file, stringify(config(false)));
    expect(await daemon.reload()).toBe(true);
    held[0]!.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ user_id: 'u-1' }));
    expect((await pending).status).toBe(200);
    const admin = `http://127.0.0.1:${daemon.addresses().admin.port}`;
    const series = routeSeries(await (await fetch(`${admin}/metrics`)).text());
    expect(series.filter((l) => l.includes('route="slow"'))).toEqual([]);
    // The request went through (the validate call of the authenticator that stays was counted).
    expect(await (await fetch(`${admin}/metrics`)).text()).toContain(
      'meshlet_gateway_validate_calls_total{authenticator="identity",result="allowed"} 1',
    );
  });
});
