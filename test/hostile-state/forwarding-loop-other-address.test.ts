// An endpoint on a meshlet listener's port at another local address is no forwarding loop (a listener on 127.0.0.1 is not reached through 127.0.0.2); one that reaches the listener still is.
import { connect, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEndpoint } from '../../src/upstream/endpoint.ts';
import { FORWARDING_LOOP_WARNING, OwnListeners } from '../../src/upstream/forwarding-loop.ts';
import { startMeshlet } from '../helpers/meshlet.ts';
import { sampleSum, scrapeMetrics } from '../helpers/metrics.ts';
import { closedPort } from '../helpers/upstream-server.ts';
import { upstreamState } from '../helpers/upstream-state.ts';
import {
  expectNothingCounted,
  loopWarnings,
  QUIET,
  resolveNameTo,
  serviceOn,
  TRIPWIRES,
} from './loop-fixtures.ts';

/** Longest a request may take, ms. */
const ANSWER_WITHIN_MS = 3000;

/** A made-up host name this process resolves to 127.0.0.2 ({@link resolveNameTo}). */
const OTHER = 'meshlet-other-address.test';

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** GET `url` with Host `host` (routes to that upstream), bounded to {@link ANSWER_WITHIN_MS}. */
async function get(url: string, host: string) {
  const res = await request(url, { headers: { host }, signal: AbortSignal.timeout(ANSWER_WITHIN_MS) });
  await res.body.dump();
  return {
    status: res.statusCode,
    error: res.headers['x-meshlet-error'],
    attempts: res.headers['x-meshlet-attempts'],
  };
}

/** A connected socket to `address:port` (closed after the test). */
async function connected(address: string, port: number): Promise<Socket> {
  const socket = connect({ host: address, port });
  stops.push(() => void socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

describe('an endpoint at a meshlet listener port on another local address', () => {
  it(
    'meshlet listens on 127.0.0.1:P, a real service on 127.0.0.2:P, given by address and by a name resolving to it: every request served, neither endpoint a loop, no warning',
    { timeout: 20_000 },
    async () => {
      const port = await closedPort();
      const service = await serviceOn('127.0.0.2', port);
      stops.push(service.close);
      stops.push(resolveNameTo(OTHER, '127.0.0.2'));
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { outbound: { address: '127.0.0.1', port }, adminGrpc: { enabled: false } },
        registry: {
          type: 'static',
          endpoints: { byaddress: [`127.0.0.2:${port}`], byname: [`${OTHER}:${port}`] },
        },
        upstreams: { byaddress: { ...TRIPWIRES }, byname: { ...TRIPWIRES } },
      });
      stops.push(() => mesh.close());
      expect(mesh.daemon.addresses().outbound.port).toBe(port);
      for (const [name, endpoint] of [
        ['byaddress', `127.0.0.2:${port}`],
        ['byname', `${OTHER}:${port}`],
      ] as const) {
        for (let i = 0; i < 3; i++) {
          const r = await get(`${mesh.outbound}/v1/${i}`, name);
          expect([name, r.status, r.error, r.attempts]).toEqual([name, 200, undefined, '1']);
        }
        expect(mesh.daemon.table.get(name)!.loopEndpoints).toEqual([]);
        const state = await upstreamState(mesh.admin, name);
        expect(state.endpoints.map((e) => [e.id, e.state as string])).toEqual([[endpoint, 'healthy']]);
        expect(loopWarnings(mesh, name)).toEqual([]);
        await expectNothingCounted(mesh, name);
        expect(
          sampleSum(await scrapeMetrics(mesh.admin), 'meshlet_upstream_endpoints', {
            upstream: name,
            state: 'loop',
          }),
        ).toBe(0);
      }
      expect(service.served()).toBe(6);
    },
  );

  it(
    'the endpoints that do reach the listener on 127.0.0.1:P (127.0.0.1:P, localhost:P) are still refused beside the service on 127.0.0.2:P, which takes every request',
    { timeout: 20_000 },
    async () => {
      const port = await closedPort();
      const service = await serviceOn('127.0.0.2', port);
      stops.push(service.close);
      const loops = [`127.0.0.1:${port}`, `localhost:${port}`];
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { outbound: { address: '127.0.0.1', port }, adminGrpc: { enabled: false } },
        registry: { type: 'static', endpoints: { mixed: [...loops, `127.0.0.2:${port}`] } },
        upstreams: { mixed: { loadBalancer: 'round_robin', retries: { attempts: 1 }, ...TRIPWIRES } },
      });
      stops.push(() => mesh.close());
      for (let i = 0; i < 6; i++) {
        const r = await get(`${mesh.outbound}/v1/${i}`, 'mixed');
        expect([r.status, r.error, r.attempts]).toEqual([200, undefined, '1']);
      }
      expect(service.served()).toBe(6);
      expect(mesh.daemon.table.get('mixed')!.loopEndpoints.map((e) => e.id)).toEqual(loops);
      const state = await upstreamState(mesh.admin, 'mixed');
      expect(state.endpoints.map((e) => [e.id, e.state as string])).toEqual([
        [`127.0.0.2:${port}`, 'healthy'],
        ...loops.map((id) => [id, 'loop']),
      ]);
      expect(loopWarnings(mesh, 'mixed')).toEqual(loops);
      await expectNothingCounted(mesh, 'mixed');
    },
  );

  it(
    'a listener on 0.0.0.0:P is reached through 127.0.0.2: refused at discovery given by address, at its connection given by a name resolving to it; 503 no_healthy_endpoints, nothing counted',
    { timeout: 20_000 },
    async () => {
      const port = await closedPort();
      stops.push(resolveNameTo(OTHER, '127.0.0.2'));
      const mesh = await startMeshlet({
        ...QUIET,
        listeners: { outbound: { address: '0.0.0.0', port }, adminGrpc: { enabled: false } },
        registry: {
          type: 'static',
          endpoints: { byaddress: [`127.0.0.2:${port}`], byname: [`${OTHER}:${port}`] },
        },
        upstreams: {
          byaddress: {
            retries: { attempts: 3, retryOn: ['connect-failure', 'gateway-error'] },
            ...TRIPWIRES,
          },
          byname: { retries: { attempts: 3, retryOn: ['connect-failure', 'gateway-error'] }, ...TRIPWIRES },
        },
      });
      stops.push(() => mesh.close());
      // By address: refused before any connection.
      expect(mesh.daemon.table.get('byaddress')!.loopEndpoints.map((e) => e.id)).toEqual([
        `127.0.0.2:${port}`,
      ]);
      // By name: not resolved at discovery, refused when its connection reaches the listener.
      expect(mesh.daemon.table.get('byname')!.loopEndpoints).toEqual([]);
      for (const [name, endpoint] of [
        ['byaddress', `127.0.0.2:${port}`],
        ['byname', `${OTHER}:${port}`],
      ] as const) {
        for (let i = 0; i < 3; i++) {
          const r = await get(`${mesh.outbound}/v1/${i}`, name);
          expect([name, r.status, r.error, r.attempts]).toEqual([name, 503, 'no_healthy_endpoints', '0']);
        }
        expect(mesh.daemon.table.get(name)!.loopEndpoints.map((e) => e.id)).toEqual([endpoint]);
        const state = await upstreamState(mesh.admin, name);
        expect(state.endpoints.map((e) => [e.id, e.state as string])).toEqual([[endpoint, 'loop']]);
        expect(loopWarnings(mesh, name)).toEqual([endpoint]);
        await expectNothingCounted(mesh, name);
      }
      const resolved = mesh.logs.find((l) => l.msg === FORWARDING_LOOP_WARNING && l.upstream === 'byname')!;
      expect(String(resolved.detail)).toContain(`resolved to 127.0.0.2:${port}`);
    },
  );
});

describe('OwnListeners: which addresses reach a listener', () => {
  it('a wildcard listener is reached through any address of this host, a listener on one address only through that address', () => {
    const own = new OwnListeners();
    const reaches = (address: string, port: number) => own.isOwnListener(makeEndpoint(address, port));
    own.add(4001, '127.0.0.1');
    for (const a of ['127.0.0.1', '127.1', '::ffff:127.0.0.1', 'localhost', '0.0.0.0', '::', hostname()]) {
      expect([a, reaches(a, 4001)]).toEqual([a, true]);
    }
    for (const a of ['127.0.0.2', '::1', '192.0.2.1', 'example.com']) {
      expect([a, reaches(a, 4001)]).toEqual([a, false]);
    }
    expect(reaches('127.0.0.1', 4002)).toBe(false);

    own.add(4002, '::1');
    for (const a of ['::1', '0:0:0:0:0:0:0:1', 'localhost']) expect([a, reaches(a, 4002)]).toEqual([a, true]);
    for (const a of ['127.0.0.1', '127.0.0.2']) expect([a, reaches(a, 4002)]).toEqual([a, false]);

    // `::` (dual-stack: IPv4 too) and `0.0.0.0`: every address of this host, nothing beyond it.
    own.add(4003, '::');
    own.add(4004, '0.0.0.0');
    for (const port of [4003, 4004]) {
      for (const a of ['127.0.0.2', '127.0.0.1', '::1', 'localhost', hostname()]) {
        expect([a, port, reaches(a, port)]).toEqual([a, port, true]);
      }
      expect(reaches('192.0.2.1', port)).toBe(false);
    }

    // A listener known by a host name (the gRPC admin API's configured address): every address of this host.
    own.add(4005, 'localhost');
    expect(reaches('127.0.0.2', 4005)).toBe(true);
  });

  it('a second address on a port widens it and tells subscribers once; the same one again does nothing', () => {
    const own = new OwnListeners();
    let told = 0;
    own.onChange(() => told++);
    own.add(0, '127.0.0.1');
    own.add(4001, '127.0.0.1');
    own.add(4001, '127.0.0.1');
    expect(told).toBe(1);
    expect(own.isOwnListener(makeEndpoint('127.0.0.2', 4001))).toBe(false);
    own.add(4001, '127.0.0.2');
    expect(told).toBe(2);
    expect(own.isOwnListener(makeEndpoint('127.0.0.2', 4001))).toBe(true);
    expect(own.isOwnListener(makeEndpoint('127.0.0.3', 4001))).toBe(false);
  });

  it("a connection's peer: 127.0.0.2:P is meshlet's own only when a listener on P is on 127.0.0.2 or a wildcard", async () => {
    const port = await closedPort();
    const service = await serviceOn('127.0.0.2', port);
    stops.push(service.close);
    const socket = await connected('127.0.0.2', port);
    const own = new OwnListeners();
    expect(own.isOwnPeer(socket)).toBe(false);
    own.add(port, '127.0.0.1');
    expect(own.isOwnPeer(socket)).toBe(false);
    own.add(port, '::1');
    expect(own.isOwnPeer(socket)).toBe(false);
    own.add(port, '::');
    expect(own.isOwnPeer(socket)).toBe(true);
    const exact = new OwnListeners();
    exact.add(port, '127.0.0.2');
    expect(exact.isOwnPeer(socket)).toBe(true);
  });
});
