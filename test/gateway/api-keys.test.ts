// Gateway API keys from a watched file: valid, revoked by editing the file, a per-key token bucket, and tenants confined to their tagged endpoints.
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { hashApiKey } from '../../src/gateway/api-key-authenticator.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl } from './fixtures.ts';

describe('gateway API keys and tenants', () => {
  let a1: TestUpstream;
  let a2: TestUpstream;
  let b1: TestUpstream;
  let m: InProcessMeshlet;
  let gw: string;
  let keysFile: string;
  const keys = [
    { name: 'acme-app', sha256: hashApiKey('key-acme'), tenant: 'acme' },
    { name: 'globex-app', sha256: hashApiKey('key-globex'), tenant: 'globex' },
    { name: 'limited', sha256: hashApiKey('key-limited'), rateLimit: { perSecond: 10, burst: 20 } },
    { name: 'revoked-soon', sha256: hashApiKey('key-revoke') },
    { name: 'équipe données', sha256: hashApiKey('key-utf8') },
  ];

  beforeAll(async () => {
    [a1, a2, b1] = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
    const dir = tempDir('meshlet-gw-keys-');
    keysFile = join(dir, 'api-keys.yaml');
    writeFileSync(keysFile, stringify({ keys }));
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: {
        endpoints: {
          orders: [
            { address: '127.0.0.1', port: a1.port, tags: ['acme'] },
            { address: '127.0.0.1', port: a2.port, tags: ['acme'] },
            { address: '127.0.0.1', port: b1.port, tags: ['globex'] },
          ],
        },
      },
      gateway: {
        auth: { keys: { type: 'apiKey', file: keysFile } },
        routes: [{ match: { pathPrefix: '/orders/' }, upstream: 'orders', auth: ['keys'] }],
        tenants: { acme: { upstreamTags: ['acme'] }, globex: { upstreamTags: ['globex'] } },
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await Promise.all([a1.close(), a2.close(), b1.close()]);
  });

  it('a valid key (x-api-key or bearer) → 200 with its name upstream, never the key; an unknown key → 401', async () => {
    const res = await call(gw, '/orders/1', { 'x-api-key': 'key-revoke', 'x-api-key-name': 'forged' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).headers['x-api-key-name']).toBe('revoked-soon');
    expect((await call(gw, '/orders/1', { authorization: 'Bearer key-revoke' })).status).toBe(200);
    const bad = await call(gw, '/orders/1', { 'x-api-key': 'nope' });
    expect(bad.status).toBe(401);
    expect(String(bad.headers['www-authenticate'])).toContain('ApiKey');
    await new Promise((r) => setTimeout(r, 50));
    expect(m.logs.some((l) => l.msg === 'access' && l.keyName === 'revoked-soon')).toBe(true);
    expect(JSON.stringify(m.logs)).not.toContain('key-revoke');
  });

  it('a key named in non-ASCII reaches the upstream, its name percent-encoded (UTF-8) like a claim', async () => {
    const res = await call(gw, '/orders/1', { 'x-api-key': 'key-utf8' });
    expect(res.status).toBe(200);
    const sent = JSON.parse(res.body).headers['x-api-key-name'] as string;
    expect(sent).toBe('%C3%A9quipe%20donn%C3%A9es');
    expect(decodeURIComponent(sent)).toBe('équipe données');
  });

  it('a deleted keys file keeps the loaded keys, logged once (not at every poll); written back, it loads again', async () => {
    const unreadable = (): number =>
      m.logs.filter((l) => l.msg === 'api key file unreadable; keeping the loaded keys').length;
    const before = unreadable();
    unlinkSync(keysFile);
    await new Promise((r) => setTimeout(r, 1600)); // three polls
    expect((await call(gw, '/orders/1', { 'x-api-key': 'key-acme' })).status).toBe(200);
    expect(unreadable() - before).toBe(1);
    writeFileSync(keysFile, stringify({ keys: keys.filter((k) => k.name !== 'acme-app') }));
    const started = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - started < 2000) {
      await new Promise((r) => setTimeout(r, 50));
      status = (await call(gw, '/orders/1', { 'x-api-key': 'key-acme' })).status;
    }
    expect(status).toBe(401);
    expect(m.logs.some((l) => l.msg === 'api key file readable again')).toBe(true);
    writeFileSync(keysFile, stringify({ keys }));
    await new Promise((r) => setTimeout(r, 600));
  });

  it('revoked by editing the file → 401 within 1 s', async () => {
    expect((await call(gw, '/orders/1', { 'x-api-key': 'key-revoke' })).status).toBe(200);
    writeFileSync(keysFile, stringify({ keys: keys.filter((k) => k.name !== 'revoked-soon') }));
    const started = Date.now();
    let status = 200;
    while (Date.now() - started < 1000) {
      status = (await call(gw, '/orders/1', { 'x-api-key': 'key-revoke' })).status;
      if (status === 401) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(status).toBe(401);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('per-key limit 10/s burst 20: a 2 s burst gets exactly the expected 429s (± 1), each with retry-after and ratelimit-*', async () => {
    let ok = 0;
    let limited = 0;
    let sample: Record<string, unknown> | undefined;
    const started = performance.now();
    let sent = 0;
    // 100 requests spread over 2 s (one per 20 ms).
    while (sent < 100) {
      const due = started + sent * 20;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const res = await call(gw, '/orders/1', { 'x-api-key': 'key-limited' });
      sent++;
      if (res.status === 200) ok++;
      else if (res.status === 429) {
        limited++;
        sample ??= res.headers;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const expectedOk = Math.min(100, 20 + Math.floor(10 * seconds));
    expect(Math.abs(ok - expectedOk)).toBeLessThanOrEqual(1);
    expect(ok + limited).toBe(100);
    expect(sample?.['retry-after']).toBe('1');
    expect(sample?.['x-meshlet-error']).toBe('rate_limited');
    expect(sample?.['ratelimit-limit']).toBe('20');
    expect(sample?.['ratelimit-remaining']).toBe('0');
    expect(sample?.['ratelimit-policy']).toBe('20;w=2');
    const metrics = await (await fetch(`${m.admin}/metrics`)).text();
    expect(metrics).toContain(
      `meshlet_gateway_rate_limited_total{route="orders#0",limit="key",tenant=""} ${limited}`,
    );
  });

  it("tenants: an acme key only ever reaches acme's instances, a globex key only globex's", async () => {
    const before = [a1.requests.length, a2.requests.length, b1.requests.length];
    for (let i = 0; i < 30; i++) {
      expect((await call(gw, '/orders/x', { 'x-api-key': 'key-acme' })).status).toBe(200);
    }
    const acme = [
      a1.requests.length - before[0]!,
      a2.requests.length - before[1]!,
      b1.requests.length - before[2]!,
    ];
    expect(acme[2]).toBe(0);
    expect(acme[0]! + acme[1]!).toBe(30);
    expect(acme[0]).toBeGreaterThan(0);
    expect(acme[1]).toBeGreaterThan(0);
    for (let i = 0; i < 10; i++) {
      expect((await call(gw, '/orders/x', { 'x-api-key': 'key-globex' })).status).toBe(200);
    }
    expect(b1.requests.length - before[2]!).toBe(10);
    expect(a1.requests.length + a2.requests.length - before[0]! - before[1]!).toBe(30);
  });
});
