// A spawned meshlet held at 256 file descriptors and flooded with connections: it neither crashes nor spins, refuses with 503 overloaded, blames no endpoint, warns once, and serves again after.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { collectReply, replyComplete } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { metric, openConnection, requestOn } from './conn-helpers.ts';

/** The fd limit meshlet runs under here, and the connections thrown at it (bounded). */
const FD_LIMIT = 256;
const FLOOD = 400;
const FD_WARNING = 'meshlet out of file descriptors';
/** Outlier detection that ejects an endpoint on its first blamed failure. */
const SENSITIVE = { consecutiveGatewayFailure: 1, consecutiveConnectFailure: 1, consecutive5xx: 1 };
/** A WebSocket handshake for upstream `chat`. */
const UPGRADE =
  'GET /ws HTTP/1.1\r\nhost: chat\r\nconnection: Upgrade\r\nupgrade: websocket\r\n' +
  'sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

/** Open file descriptors of process `pid` (Linux /proc). */
const fdsOf = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
/** User + system CPU time of process `pid`, clock ticks (Linux /proc). */
function cpuTicksOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Polls `check` every 50 ms until it holds; throws naming `what` after `ms`. */
async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('file descriptors exhausted (EMFILE) in a spawned meshlet', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let m: MeshletProcess;
  let pid: number;
  beforeAll(async () => {
    a = await startUpstream();
    b = await startUpstream();
    m = await spawnMeshlet({
      listeners: { adminGrpc: { enabled: false } },
      registry: {
        endpoints: { warm: [a.endpoint], users: [a.endpoint, b.endpoint], chat: [a.endpoint, b.endpoint] },
      },
      // One blamed failure would eject an endpoint: any blame shows.
      upstreams: { users: { outlierDetection: SENSITIVE }, chat: { outlierDetection: SENSITIVE } },
    });
    pid = m.proc.pid!;
    execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${FD_LIMIT}:${FD_LIMIT}`]);
  }, 30_000);
  afterAll(async () => {
    if (m !== undefined && m.proc.exitCode === null) {
      m.proc.kill('SIGKILL');
      await m.exited;
    }
    await a?.close();
    await b?.close();
  });

  it('survives a connection flood at the limit, answers 503 overloaded without blaming the endpoints, warns once, then serves again', async () => {
    const port = Number(new URL(m.outbound).port);
    const held = await openConnection(port);
    expect(await requestOn(held, 'warm')).toMatch(/^HTTP\/1\.1 200 /);
    const heldForTunnel = await openConnection(port);

    const flood: Socket[] = [];
    try {
      for (let i = 0; i < FLOOD; i++) {
        const s = connect(port, '127.0.0.1');
        s.on('error', () => undefined);
        flood.push(s);
      }
      await until(() => fdsOf(pid) >= FD_LIMIT, `meshlet to reach ${FD_LIMIT} fds (at ${fdsOf(pid)})`);
      // libuv closes what it cannot accept: no crash, no busy loop on EMFILE.
      const before = cpuTicksOf(pid);
      await new Promise((r) => setTimeout(r, 1000));
      expect(cpuTicksOf(pid) - before).toBeLessThan(50);
      expect(m.proc.exitCode).toBeNull();

      // A request on a connection meshlet already holds: its connect to `users` fails with EMFILE.
      for (let i = 0; i < 3; i++) {
        const reply = await requestOn(held, 'users', `/during-${i}`);
        expect(reply).toMatch(/^HTTP\/1\.1 503 /);
        expect(reply).toContain('x-meshlet-error: overloaded');
        expect(reply).toContain('out of file descriptors');
        expect(reply).toContain('x-meshlet-attempts: 1');
      }
      // A tunnel's dial fails the same way: 503 overloaded, no retry, no blame.
      const collected = collectReply(heldForTunnel, { timeoutMs: 5000, until: replyComplete });
      heldForTunnel.write(UPGRADE);
      const tunnelReply = (await collected).text;
      expect(tunnelReply).toMatch(/^HTTP\/1\.1 503 /);
      expect(tunnelReply).toContain('x-meshlet-error: overloaded');
    } finally {
      for (const s of flood) s.destroy();
      held.destroy();
      heldForTunnel.destroy();
    }
    await until(() => fdsOf(pid) < FD_LIMIT / 2, 'meshlet to free its fds');

    // Serves again, through both endpoints, neither of them ejected nor blamed.
    const again = await openConnection(port);
    for (let i = 0; i < 2; i++)
      expect(await requestOn(again, 'users', `/after-${i}`)).toMatch(/^HTTP\/1\.1 200 /);
    again.destroy();
    expect(new Set([a.requests.length > 0, b.requests.length > 0])).toEqual(new Set([true]));
    const view = (await (await request(`${m.admin}/upstreams`)).body.json()) as {
      upstreams: Record<string, { endpoints: { state: string }[]; circuitBreaker: string }>;
    };
    for (const name of ['users', 'chat']) {
      expect(
        view.upstreams[name]!.endpoints.map((e) => e.state),
        name,
      ).toEqual(['healthy', 'healthy']);
      expect(view.upstreams[name]!.circuitBreaker, name).toBe('closed');
      expect(await metric(m.admin, 'meshlet_upstream_connect_errors_total', { upstream: name }), name).toBe(
        0,
      );
    }
    const labels = { upstream: 'users' };
    expect(await metric(m.admin, 'meshlet_upstream_attempts_total', { ...labels, result: 'reset' })).toBe(0);
    expect(await metric(m.admin, 'meshlet_retries_total', labels)).toBe(0);
    expect(await metric(m.admin, 'meshlet_local_replies_total', { ...labels, code: 'overloaded' })).toBe(3);

    // One warning for the four refusals (the access lines carry each one).
    const warnings = m.stdout.filter((l) => l.includes(`"msg":"${FD_WARNING}"`));
    expect(warnings).toHaveLength(1);
    expect(JSON.parse(warnings[0]!)).toMatchObject({ level: 'warn', code: 'EMFILE', upstream: 'users' });
  }, 30_000);
});

describe('listeners.outbound.maxConnections below the fd limit', () => {
  let up: TestUpstream;
  let m: MeshletProcess;
  let pid: number;
  beforeAll(async () => {
    up = await startUpstream();
    m = await spawnMeshlet({
      listeners: { outbound: { port: 0, maxConnections: 150 }, adminGrpc: { enabled: false } },
      registry: { endpoints: { users: [up.endpoint] } },
    });
    pid = m.proc.pid!;
    execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${FD_LIMIT}:${FD_LIMIT}`]);
  }, 30_000);
  afterAll(async () => {
    if (m !== undefined && m.proc.exitCode === null) {
      m.proc.kill('SIGKILL');
      await m.exited;
    }
    await up?.close();
  });

  it('keeps file descriptors for upstream connections under the same flood: requests are served, the excess is dropped and counted', async () => {
    const port = Number(new URL(m.outbound).port);
    const held = await openConnection(port);
    const flood: Socket[] = [];
    let closedByMeshlet = 0;
    try {
      for (let i = 0; i < FLOOD; i++) {
        const s = connect(port, '127.0.0.1');
        s.on('error', () => undefined);
        s.on('close', () => closedByMeshlet++);
        flood.push(s);
      }
      await until(
        () => closedByMeshlet >= FLOOD - 149,
        `meshlet to drop the flood past its cap (${closedByMeshlet})`,
      );
      expect(fdsOf(pid)).toBeLessThan(FD_LIMIT);
      // A new upstream connection still gets a descriptor.
      expect(await requestOn(held, 'users', '/during')).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      for (const s of flood) s.destroy();
      held.destroy();
    }
    expect(
      await metric(m.admin, 'meshlet_listener_connections_dropped_total', { listener: 'outbound' }),
    ).toBe(FLOOD - 149);
    const warnings = m.stdout.filter((l) =>
      l.includes('"msg":"listener connection dropped: maxConnections reached"'),
    );
    expect(warnings).toHaveLength(1);
    expect(m.stdout.some((l) => l.includes(FD_WARNING))).toBe(false);
  }, 30_000);
});
