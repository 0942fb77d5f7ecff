// gateway.tenantDefaults: a tenant with no rateLimit of its own (listed or not) gets a bucket of its own at the default rate.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load-config.ts';
import { hashApiKey } from '../../src/gateway/api-key-authenticator.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl } from './fixtures.ts';

describe('gateway tenantDefaults (real meshlet, API keys)', () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    const dir = tempDir('meshlet-gw-tenants-');
    const keysFile = join(dir, 'api-keys.yaml');
    const keys = [
      { name: 'acme-app', sha256: hashApiKey('key-acme'), tenant: 'acme' },
      { name: 'globex-app', sha256: hashApiKey('key-globex'), tenant: 'globex' },
      { name: 'newco-app', sha256: hashApiKey('key-newco'), tenant: 'newco' },
      { name: 'newco-batch', sha256: hashApiKey('key-newco-2'), tenant: 'newco' },
      { name: 'initech-app', sha256: hashApiKey('key-initech'), tenant: 'initech' },
      { name: 'no-tenant', sha256: hashApiKey('key-none') },
    ];
    writeFileSync(keysFile, stringify({ keys }));
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { orders: [upstream.endpoint] } },
      gateway: {
        auth: { keys: { type: 'apiKey', file: keysFile } },
        routes: [
          { match: { pathPrefix: '/orders/' }, upstream: 'orders', auth: ['keys'] },
          { match: { pathPrefix: '/invoices/' }, upstream: 'orders', auth: ['keys'] },
        ],
        tenants: { acme: { rateLimit: { perSecond: 0.01, burst: 4 } }, globex: {} },
        tenantDefaults: { rateLimit: { perSecond: 0.01, burst: 2 } },
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  const statuses = async (key: string, n: number, path = '/orders/1'): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await call(gw, path, { 'x-api-key': key })).status);
    return out;
  };

  it('a tenant not listed is held to the default: one bucket for all its keys and routes, 429 rate_limited after the burst', async () => {
    expect(await statuses('key-newco', 1)).toEqual([200]);
    expect(await statuses('key-newco-2', 1, '/invoices/1')).toEqual([200]);
    const third = await call(gw, '/orders/1', { 'x-api-key': 'key-newco' });
    expect(third.status).toBe(429);
    expect(JSON.parse(third.body).error).toBe('rate_limited');
    expect(JSON.parse(third.body).message).toContain('tenant rate limit');
    expect(third.headers['ratelimit-limit']).toBe('2');
    expect(third.headers['retry-after']).toBeDefined();
  });

  it('each unlisted tenant has a bucket of its own: another one is not refused because newco used its share', async () => {
    expect(await statuses('key-initech', 3)).toEqual([200, 200, 429]);
  });

  it('a listed tenant without its own rateLimit gets the default; one with its own keeps it', async () => {
    expect(await statuses('key-globex', 3)).toEqual([200, 200, 429]);
    expect(await statuses('key-acme', 5)).toEqual([200, 200, 200, 200, 429]);
  });

  it('a credential without a tenant is not a tenant: no tenant limit applies', async () => {
    expect(await statuses('key-none', 6)).toEqual([200, 200, 200, 200, 200, 200]);
  });

  it('refusals are counted as limit="tenant", unlisted tenants under tenant="other"', async () => {
    const text = await (await request(`${m.admin}/metrics`)).body.text();
    const count = (tenant: string): number =>
      Number(
        new RegExp(
          `^meshlet_gateway_rate_limited_total\\{route="orders#0",limit="tenant",tenant="${tenant}"\\} (\\d+)$`,
          'm',
        ).exec(text)?.[1] ?? 0,
      );
    expect(count('other')).toBe(2);
    expect(count('globex')).toBe(1);
    expect(count('acme')).toBe(1);
  });
});

describe('gateway tenantDefaults and rateLimitIpv6Prefix in the config', () => {
  const base = { registry: { endpoints: {} } };
  it('are optional, strict, and checked', () => {
    const ok = validateConfig({ ...base, gateway: { tenantDefaults: { rateLimit: { perSecond: 5 } } } });
    expect(ok.gateway?.tenantDefaults?.rateLimit?.perSecond).toBe(5);
    expect(ok.gateway?.rateLimitIpv6Prefix).toBe(64);
    expect(validateConfig({ ...base, gateway: {} }).gateway?.tenantDefaults).toBeUndefined();
    expect(() => validateConfig({ ...base, gateway: { tenantDefaults: { upstreamTags: ['x'] } } })).toThrow(
      /tenantDefaults/,
    );
    expect(() => validateConfig({ ...base, gateway: { rateLimitIpv6Prefix: 16 } })).toThrow(
      /rateLimitIpv6Prefix/,
    );
    expect(
      validateConfig({ ...base, gateway: { rateLimitIpv6Prefix: 48 } }).gateway?.rateLimitIpv6Prefix,
    ).toBe(48);
  });
});
