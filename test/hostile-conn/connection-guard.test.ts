// ConnectionGuard on a real net.Server: drop warnings are rate-limited and say how many were left out; an accept error is logged, never fatal.
import { createServer, type Server, type Socket } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionGuard } from '../../src/listener/connection-guard.ts';
import { captureLogger } from '../tls/tls-helpers.ts';
import { fateOf, openConnection } from './conn-helpers.ts';

/** The guard's series on a fresh registry. */
function series() {
  const registry = new Registry();
  const open = new Gauge({
    name: 'open',
    help: 'h',
    labelNames: ['listener'] as const,
    registers: [registry],
  });
  const dropped = new Counter({
    name: 'dropped',
    help: 'h',
    labelNames: ['listener'] as const,
    registers: [registry],
  });
  return { open, dropped };
}

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const server of servers.splice(0)) await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A bound server on 127.0.0.1 with `guard` attached; resolves with its port. */
async function guarded(guard: ConnectionGuard): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => sockets.push(socket));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  guard.attach(server);
  return { server, port: (server.address() as { port: number }).port };
}

describe('ConnectionGuard', () => {
  it('warns once per window about drops, then again with how many were left out', async () => {
    const { logger, logs } = captureLogger();
    const s = series();
    const guard = new ConnectionGuard('outbound', s, logger, { maxConnections: 1, warningWindowMs: 300 });
    const { port } = await guarded(guard);
    sockets.push(await openConnection(port));
    for (let i = 0; i < 3; i++) expect(await fateOf(port, 500)).toBe('dropped');
    const warnings = () =>
      logs.filter((l) => l.msg === 'listener connection dropped: maxConnections reached');
    expect(warnings()).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 350));
    expect(await fateOf(port, 500)).toBe('dropped');
    expect(warnings()).toHaveLength(2);
    expect(warnings()[1]).toMatchObject({ listener: 'outbound', maxConnections: 1, port, suppressed: 2 });
    expect((await s.dropped.get()).values[0]).toMatchObject({ value: 4, labels: { listener: 'outbound' } });
    expect((await s.open.get()).values[0]).toMatchObject({ value: 1, labels: { listener: 'outbound' } });
  });

  it('logs an accept error (EMFILE) once per window and keeps the listener serving', async () => {
    const { logger, logs } = captureLogger();
    const guard = new ConnectionGuard('inbound', series(), logger, { warningWindowMs: 60_000 });
    const { server, port } = await guarded(guard);
    // What net.Server emits when libuv cannot accept and has no spare descriptor left to shed the connection.
    const emfile = () => Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
    for (let i = 0; i < 5; i++) expect(() => server.emit('error', emfile())).not.toThrow();
    const lines = logs.filter((l) => l.msg === 'listener could not accept a connection');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', listener: 'inbound', port, reason: 'EMFILE' });
    expect(server.listening).toBe(true);
    expect(await fateOf(port, 200)).toBe('open');
  });
});
