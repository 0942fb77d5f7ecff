// Gateway per-address rate limits with IPv6 clients: one bucket per /64 (configurable), IPv4-mapped as IPv4, a bounded table.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { bucketAddress, KeyedLimit } from '../../src/gateway/rate-limits.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl, many } from './fixtures.ts';

describe('bucketAddress (the client-address key of a rate-limit bucket)', () => {
  it('keys IPv6 by its /64: every address of one end site shares a key, the next /64 does not', () => {
    const a = bucketAddress('2001:db8:0:1::1', 64);
    expect(a).toBe('2001:db8:0:1:0:0:0:0/64');
    for (const same of [
      '2001:db8:0:1::2',
      '2001:db8:0:1:ffff:ffff:ffff:ffff',
      '2001:0DB8:0000:0001:0:0:0:abcd',
      '2001:db8:0:1:1:2:3.4.5.6',
      'fe80::1%eth0'.replace('fe80::', '2001:db8:0:1::'),
    ])
      expect(bucketAddress(same, 64)).toBe(a);
    expect(bucketAddress('2001:db8:0:2::1', 64)).not.toBe(a);
    expect(bucketAddress('::1', 64)).toBe('0:0:0:0:0:0:0:0/64');
  });

  it('keys IPv4-mapped IPv6 (dual-stack sockets) and NAT64 addresses as the IPv4 address; IPv4 as it is', () => {
    expect(bucketAddress('::ffff:203.0.113.9', 64)).toBe('203.0.113.9');
    expect(bucketAddress('::FFFF:cb00:7109', 64)).toBe('203.0.113.9');
    expect(bucketAddress('64:ff9b::203.0.113.9', 64)).toBe('203.0.113.9');
    expect(bucketAddress('203.0.113.9', 64)).toBe('203.0.113.9');
  });

  it('takes other prefix lengths (48, 56, 128) and leaves a non-address as it is', () => {
    expect(bucketAddress('2001:db8:abcd:12ff::1', 48)).toBe('2001:db8:abcd:0:0:0:0:0/48');
    expect(bucketAddress('2001:db8:abcd:12ff::1', 56)).toBe('2001:db8:abcd:1200:0:0:0:0/56');
    expect(bucketAddress('2001:db8::1', 128)).toBe('2001:db8:0:0:0:0:0:1/128');
    expect(bucketAddress('2001:0db8:0:0::0001', 128)).toBe('2001:db8:0:0:0:0:0:1/128');
    expect(bucketAddress('', 64)).toBe('');
    expect(bucketAddress('not:an:address:::', 64)).toBe('not:an:address:::');
  });
});

describe('KeyedLimit bound', () => {
  it('keeps at most maxKeys buckets, dropping the least recently used, and reports each drop', () => {
    let evicted = 0;
    const limit = new KeyedLimit({ perSecond: 1, burst: 1 }, { maxKeys: 3, onEvict: () => evicted++ });
    for (let i = 0; i < 10; i++) limit.take(`i:10.0.0.${i}`);
    expect(limit.size).toBe(3);
    expect(evicted).toBe(7);
  });
});

describe('gateway per-address limits with IPv6 clients (real sockets)', () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let gw: string;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startMeshlet({
      // '::' is dual-stack: IPv4 clients arrive as ::ffff:a.b.c.d, IPv6 ones (::1) as themselves.
      listeners: { gateway: { address: '::', port: 0 } },
      registry: { endpoints: { web: [upstream.endpoint] } },
      gateway: {
        trustedProxies: 1,
        routes: [
          {
            match: { pathPrefix: '/a/' },
            upstream: 'web',
            rateLimit: { perSecond: 0.01, burst: 2, by: 'ip' },
          },
          {
            match: { pathPrefix: '/b/' },
            upstream: 'web',
            rateLimit: { perSecond: 0.01, burst: 2, by: 'ip' },
          },
          {
            match: { pathPrefix: '/c/' },
            upstream: 'web',
            rateLimit: { perSecond: 0.01, burst: 2, by: 'ip' },
          },
          {
            name: 'wide',
            match: { pathPrefix: '/d/' },
            upstream: 'web',
            rateLimit: { perSecond: 0.01, burst: 1, by: 'ip' },
          },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
    port = m.daemon.addresses().gateway!.port;
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  it('behind a trusted proxy: a client rotating addresses within its /64 gets 429 after the burst; another /64 does not', async () => {
    const from = (ip: string) => call(gw, '/a/x', { 'x-forwarded-for': ip });
    expect((await from('2001:db8:1:2::1')).status).toBe(200);
    expect((await from('2001:db8:1:2::2')).status).toBe(200);
    const third = await from('2001:db8:1:2:dead:beef:0:3');
    expect(third.status).toBe(429);
    expect(third.headers['x-meshlet-error']).toBe('rate_limited');
    expect((await from('[2001:db8:1:2::4]:4711')).status).toBe(429);
    expect((await from('2001:db8:1:3::1')).status).toBe(200);
  });

  it('an IPv4 client is one bucket whether a proxy writes it as IPv4 or IPv4-mapped IPv6', async () => {
    const from = (ip: string) => call(gw, '/b/x', { 'x-forwarded-for': ip });
    expect((await from('198.51.100.7')).status).toBe(200);
    expect((await from('::ffff:198.51.100.7')).status).toBe(200);
    expect((await from('::ffff:c633:6407')).status).toBe(429);
    expect((await from('198.51.100.8')).status).toBe(200);
  });

  it('with no x-forwarded-for the socket peer counts: ::1 over IPv6 and ::ffff:127.0.0.1 over IPv4 are limited apart', async () => {
    const v4 = (): Promise<number> => call(gw, '/c/x').then((r) => r.status);
    const six = (): Promise<number> =>
      request(`http://[::1]:${port}/c/x`).then(async (r) => (await r.body.text(), r.statusCode));
    expect([await six(), await six(), await six()]).toEqual([200, 200, 429]);
    expect([await v4(), await v4(), await v4()]).toEqual([200, 200, 429]);
  });

  it('the bucket table stays within 10,000 clients: 10,050 distinct /64s drop the 50 least recently seen, counted in a metric', async () => {
    const evictions = async (): Promise<number> => {
      const text = await (await request(`${m.admin}/metrics`)).body.text();
      const line = /^meshlet_gateway_rate_limit_evictions_total\{route="wide",limit="route"\} (\d+)$/m.exec(
        text,
      );
      return line === null ? 0 : Number(line[1]);
    };
    expect(await evictions()).toBe(0);
    const site = (i: number): string => `2001:db8:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`;
    const statuses = await many(10_050, 64, (i) =>
      call(gw, '/d/x', { 'x-forwarded-for': site(i) }).then((r) => r.status),
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(await evictions()).toBe(50);
    // The most recent client is still tracked (and refused); its neighbour address in the same /64 too.
    expect((await call(gw, '/d/x', { 'x-forwarded-for': '2001:db8:0:2741::2' })).status).toBe(429);
  }, 60_000);
});
