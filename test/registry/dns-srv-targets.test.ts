// SRV targets looked up together: behind a slow resolver, 20 targets cost about one round trip, and a silent target one timeout.
import { createSocket, type Socket } from 'node:dgram';
import * as packet from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { adminGet, metric } from '../consul/consul-helpers.ts';
import { DnsServer } from './servers.ts';

/**
 * A recursive resolver in front of `DnsServer`: it answers the names in `delays` that many ms late,
 * never answers those in `silent`, and sends no additional records (no glue), so every SRV target
 * takes its own A/AAAA lookup.
 */
class SlowResolver {
  readonly delays = new Map<string, number>();
  readonly silent = new Set<string>();
  #socket: Socket | null = null;
  readonly #pending = new Set<{ timer: NodeJS.Timeout; upstream: Socket }>();
  port = 0;

  readonly upstreamPort: number;

  constructor(upstreamPort: number) {
    this.upstreamPort = upstreamPort;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const socket = createSocket('udp4');
    socket.on('message', (msg, client) => {
      let name: string;
      try {
        name = packet.decode(msg).questions?.[0]?.name.toLowerCase() ?? '';
      } catch {
        return;
      }
      if (this.silent.has(name)) return;
      const upstream = createSocket('udp4');
      const entry = {
        upstream,
        timer: setTimeout(
          () => upstream.send(msg, this.upstreamPort, '127.0.0.1'),
          this.delays.get(name) ?? 0,
        ),
      };
      this.#pending.add(entry);
      upstream.on('message', (answer) => {
        this.#pending.delete(entry);
        upstream.close();
        const decoded = packet.decode(answer);
        socket.send(packet.encode({ ...decoded, additionals: [] }), client.port, client.address);
      });
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    this.port = socket.address().port;
    this.#socket = socket;
  }

  async close(): Promise<void> {
    for (const p of this.#pending) {
      clearTimeout(p.timer);
      p.upstream.close();
    }
    this.#pending.clear();
    const s = this.#socket;
    this.#socket = null;
    if (s !== null) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

const TARGETS = 20;
const target = (zone: string, i: number): string => `t${i}.${zone}`;

/** The endpoint ids meshlet holds for `upstream`. */
async function endpointIds(admin: string, upstream: string): Promise<string[]> {
  const view = await adminGet<{ upstreams: Record<string, { endpoints: { id: string }[] }> }>(
    admin,
    '/upstreams',
  );
  return (view.body.upstreams[upstream]?.endpoints ?? []).map((e) => e.id).sort();
}

/** Port of target i: one endpoint per target. */
const portOf = (i: number): number => 20_000 + i;

describe('SRV targets behind a slow resolver', () => {
  let dns: DnsServer;
  let resolver: SlowResolver;

  beforeAll(async () => {
    dns = new DnsServer();
    await dns.start();
    resolver = new SlowResolver(dns.port);
    await resolver.start();
    for (const zone of ['slow.test', 'silent.test']) {
      const records = [];
      for (let i = 0; i < TARGETS; i++) {
        dns.set(target(zone, i), [{ type: 'A', ttl: 60, data: '127.0.0.1' }]);
        records.push({
          type: 'SRV' as const,
          ttl: 60,
          data: { priority: 10, weight: 1, port: portOf(i), target: target(zone, i) },
        });
      }
      dns.set(`_http._tcp.${zone}`, records);
    }
  });
  afterAll(async () => {
    await resolver?.close();
    await dns?.close();
  });

  /**
   * Starts a meshlet resolving `_http._tcp.<zone>` as upstream `users`; resolves with it, or with
   * `null` when its first resolution (which the start waits for) has not finished within `ms`.
   */
  async function startWithin(
    zone: string,
    ms: number,
  ): Promise<{ mesh: InProcessMeshlet | null; starting: Promise<InProcessMeshlet> }> {
    const starting = startMeshlet({
      registry: {
        type: 'dns',
        dns: { servers: [resolver.address], minTtl: '1s', maxTtl: '60s', timeout: '1s' },
        upstreams: { users: { srv: `_http._tcp.${zone}` } },
      },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    const mesh = await Promise.race([
      starting,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), ms)),
    ]);
    return { mesh, starting };
  }

  it('20 targets, each answered 500 ms late: all 20 endpoints are there within 4 s (not 20 × 500 ms)', async () => {
    for (let i = 0; i < TARGETS; i++) resolver.delays.set(target('slow.test', i), 500);
    const { mesh, starting } = await startWithin('slow.test', 4000);
    try {
      expect(mesh, 'the first resolution did not finish within 4 s').not.toBeNull();
      const expected = Array.from({ length: TARGETS }, (_, i) => `127.0.0.1:${portOf(i)}`).sort();
      expect(await endpointIds(mesh!.admin, 'users')).toEqual(expected);
    } finally {
      await (await starting).close();
    }
  }, 30_000);

  it('a target that never answers costs one timeout: the other 19 are there, the failure is counted and logged', async () => {
    for (let i = 0; i < TARGETS; i++) resolver.delays.set(target('silent.test', i), 300);
    resolver.silent.add(target('silent.test', 7));
    const { mesh, starting } = await startWithin('silent.test', 4000);
    try {
      expect(mesh, 'the first resolution did not finish within 4 s').not.toBeNull();
      const expected = Array.from({ length: TARGETS }, (_, i) => i)
        .filter((i) => i !== 7)
        .map((i) => `127.0.0.1:${portOf(i)}`)
        .sort();
      expect(await endpointIds(mesh!.admin, 'users')).toEqual(expected);
      expect(
        await metric(mesh!.admin, 'meshlet_registry_dns_errors_total{operation="resolve"}'),
      ).toBeGreaterThanOrEqual(1);
      const warned = mesh!.logs.filter(
        (l) =>
          l.level === 'warn' &&
          l.msg === 'DNS lookup of an SRV target failed; keeping its endpoints of the last answer',
      );
      expect(warned.map((l) => [l.upstream, l.target])).toEqual([['users', 't7.silent.test']]);
    } finally {
      resolver.silent.clear();
      await (await starting).close();
    }
  }, 30_000);
});
