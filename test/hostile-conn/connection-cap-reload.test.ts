// A reload (SIGHUP) applies a changed listeners.{outbound,inbound,gateway}.maxConnections to the running listeners: raised lets new connections in, lowered keeps the open ones and drops new ones until under the cap; the connection gauge stays right.
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../src/config/schema.ts';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { fateOf, metric, openConnection, requestOn, waitFor } from './conn-helpers.ts';

/** How long a connection that is not dropped is watched, ms. */
const OPEN_MS = 300;

/** A port that was free a moment ago (per-upstream listener ports cannot be 0). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The caps this test writes into the config. */
interface Caps {
  outbound?: number;
  inbound?: number;
  gateway?: number;
}

describe('a reload changes maxConnections of the running listeners', () => {
  let app: TestUpstream;
  let m: MeshletProcess;
  let config: (caps: Caps) => ConfigInput;
  const ports = { outbound: 0, upstream: 0, inbound: 0, gateway: 0 };
  const held: Socket[] = [];

  beforeAll(async () => {
    app = await startUpstream();
    const pki = await makePki();
    const tls = await tlsFilesConfig(pki, 'orders');
    ports.upstream = await freePort();
    // Port 0 stays port 0 in every rewrite: the bound ports are kept, nothing needs a restart.
    config = (caps) => ({
      service: { name: 'orders', port: app.port },
      tls,
      listeners: {
        outbound: { port: 0, ...(caps.outbound === undefined ? {} : { maxConnections: caps.outbound }) },
        admin: { port: 0 },
        adminGrpc: { enabled: false },
        inbound: {
          address: '127.0.0.1',
          port: 0,
          ...(caps.inbound === undefined ? {} : { maxConnections: caps.inbound }),
        },
        gateway: {
          address: '127.0.0.1',
          port: 0,
          ...(caps.gateway === undefined ? {} : { maxConnections: caps.gateway }),
        },
      },
      registry: { endpoints: { users: [app.endpoint] } },
      upstreams: { users: { port: ports.upstream } },
      gateway: { routes: [{ match: { pathPrefix: '/pub/' }, upstream: 'users' }] },
    });
    m = await spawnMeshlet(config({ outbound: 2, inbound: 1, gateway: 1 }));
    const started = JSON.parse(m.stdout.find((l) => l.includes('"msg":"meshlet started"'))!) as {
      outbound: { port: number };
      inbound: { port: number };
      gateway: { port: number };
    };
    ports.outbound = started.outbound.port;
    ports.inbound = started.inbound.port;
    ports.gateway = started.gateway.port;
  }, 30_000);
  afterAll(async () => {
    for (const s of held) s.destroy();
    if (m !== undefined && m.proc.exitCode === null) {
      m.proc.kill('SIGKILL');
      await m.exited;
    }
    await app?.close();
  });

  /** Rewrites the config with `caps`, sends SIGHUP, and resolves with the `config reloaded` line. */
  async function reload(caps: Caps): Promise<{ result: string; notApplied?: string[] }> {
    const before = m.stdout.length;
    writeFileSync(m.configFile, stringify(config(caps)));
    m.proc.kill('SIGHUP');
    const line = () =>
      m.stdout
        .slice(before)
        .find((l) => l.includes('"config reloaded"') || l.includes('config reload refused'));
    const t0 = performance.now();
    while (line() === undefined) {
      if (performance.now() - t0 > 5000) throw new Error('no reload line within 5 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    return JSON.parse(line()!) as { result: string; notApplied?: string[] };
  }

  const open = (listener: string) => () => metric(m.admin, 'meshlet_listener_connections', { listener });
  const dropped = (listener: string) => () =>
    metric(m.admin, 'meshlet_listener_connections_dropped_total', { listener });
  /** A new connection to `port`, held for the rest of the test. */
  const hold = async (port: number) => {
    const s = await openConnection(port);
    held.push(s);
    return s;
  };
  const release = (s: Socket) => {
    s.destroy();
    held.splice(held.indexOf(s), 1);
  };

  it('outbound (and per-upstream): raised lets new connections in; lowered keeps the open ones, drops new ones until under the cap; removed caps nothing', async () => {
    const a = await hold(ports.outbound);
    const b = await hold(ports.outbound);
    expect(await requestOn(a, 'users')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await requestOn(b, 'users')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await fateOf(ports.outbound)).toBe('dropped');
    await waitFor(dropped('outbound'), 1, 'dropped outbound connections at cap 2');

    // Raised: applied in full (no restart asked for), the running listener takes two more.
    expect(await reload({ outbound: 4, inbound: 1, gateway: 1 })).toMatchObject({ result: 'ok' });
    expect(await fateOf(ports.outbound, OPEN_MS)).toBe('open');
    await waitFor(open('outbound'), 2, 'open outbound connections after the probe closed');
    const c = await hold(ports.outbound);
    const d = await hold(ports.outbound);
    expect(await requestOn(c, 'users')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await requestOn(d, 'users')).toMatch(/^HTTP\/1\.1 200 /);
    await waitFor(open('outbound'), 4, 'open outbound connections at cap 4');
    expect(await fateOf(ports.outbound)).toBe('dropped');
    await waitFor(dropped('outbound'), 2, 'dropped outbound connections at cap 4');

    // Lowered below what is open: nothing open is closed, every held connection still serves.
    expect(await reload({ outbound: 1, inbound: 1, gateway: 1 })).toMatchObject({ result: 'ok' });
    for (const s of [a, b, c, d]) expect(await requestOn(s, 'users')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await open('outbound')()).toBe(4);
    expect(await fateOf(ports.outbound)).toBe('dropped');
    release(a);
    release(b);
    release(c);
    await waitFor(open('outbound'), 1, 'open outbound connections after three closed');
    // One open at cap 1: still no room.
    expect(await fateOf(ports.outbound)).toBe('dropped');
    await waitFor(dropped('outbound'), 4, 'dropped outbound connections at cap 1');
    release(d);
    await waitFor(open('outbound'), 0, 'open outbound connections after the last closed');
    const e = await hold(ports.outbound);
    expect(await requestOn(e, 'users')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await fateOf(ports.outbound)).toBe('dropped');

    // The per-upstream listener follows listeners.outbound.maxConnections: cap 1 now.
    const u = await hold(ports.upstream);
    expect(await requestOn(u, 'anything')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await fateOf(ports.upstream)).toBe('dropped');
    await waitFor(dropped('upstream'), 1, 'dropped per-upstream connections at cap 1');

    // Removed: no cap on either.
    expect(await reload({ inbound: 1, gateway: 1 })).toMatchObject({ result: 'ok' });
    expect(await fateOf(ports.outbound, OPEN_MS)).toBe('open');
    expect(await fateOf(ports.upstream, OPEN_MS)).toBe('open');
    release(e);
    release(u);
    await waitFor(open('outbound'), 0, 'open outbound connections at the end');
    await waitFor(open('upstream'), 0, 'open per-upstream connections at the end');
    expect(await dropped('outbound')()).toBe(5);
  }, 30_000);

  for (const listener of ['inbound', 'gateway'] as const) {
    it(`${listener}: raised lets a new connection in, lowered keeps the open ones and drops new ones`, async () => {
      const port = ports[listener];
      const others = { outbound: 2, inbound: 1, gateway: 1 };
      const first = await hold(port);
      await waitFor(open(listener), 1, `open ${listener} connections`);
      expect(await fateOf(port)).toBe('dropped');
      await waitFor(dropped(listener), 1, `dropped ${listener} connections at cap 1`);

      expect(await reload({ ...others, [listener]: 2 })).toMatchObject({ result: 'ok' });
      expect(await fateOf(port, OPEN_MS)).toBe('open');
      await waitFor(open(listener), 1, `open ${listener} connections after the probe closed`);
      const second = await hold(port);
      await waitFor(open(listener), 2, `open ${listener} connections at cap 2`);
      expect(await fateOf(port)).toBe('dropped');

      expect(await reload({ ...others, [listener]: 1 })).toMatchObject({ result: 'ok' });
      // Both stay open (a TLS listener waits out its handshake timeout, 10 s, on a silent one).
      expect(await fateOf(port)).toBe('dropped');
      expect(first.destroyed || second.destroyed).toBe(false);
      expect(await open(listener)()).toBe(2);
      release(first);
      await waitFor(open(listener), 1, `open ${listener} connections after one closed`);
      expect(await fateOf(port)).toBe('dropped');
      release(second);
      await waitFor(open(listener), 0, `open ${listener} connections after both closed`);
      expect(await fateOf(port, OPEN_MS)).toBe('open');
      await waitFor(open(listener), 0, `open ${listener} connections at the end`);
      expect(await dropped(listener)()).toBe(4);
    }, 30_000);
  }
});
