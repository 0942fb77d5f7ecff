// `meshlet upstreams --watch` has deadlines: a port that accepts TCP but never speaks ends it (exit 1, one line) in ~5 s, a path that goes silent later within 10 s; a real meshlet still streams.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { runCli, startMeshlet } from '../helpers/meshlet.ts';
import { spawnWatch } from './watch-process.ts';

describe.concurrent('meshlet upstreams --watch: deadline for the first snapshot', () => {
  it('a port that accepts and never writes: exit 1 within ~5 s, one stderr line naming the address', async () => {
    const sockets = new Set<Socket>();
    let accepted = 0;
    const silent = createServer((socket) => {
      accepted++;
      sockets.add(socket);
      socket.on('error', () => socket.destroy());
      socket.once('close', () => sockets.delete(socket));
      // Reads whatever the client sends (its HTTP/2 preface), answers nothing.
      socket.resume();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const target = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const started = performance.now();
      // runCli kills the CLI and rejects after 9 s: without a deadline it hangs until then.
      const { code, stdout, stderr } = await runCli(['upstreams', '--watch', '--admin-grpc', target], 9000);
      const tookMs = performance.now() - started;
      expect(accepted).toBeGreaterThan(0); // it did connect: the silence is what it waited on
      expect(code).toBe(1);
      expect(stdout).toBe('');
      const lines = stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toBe(`meshlet: watching upstreams on ${target}: no snapshot within 5000 ms`);
      expect(tookMs).toBeGreaterThanOrEqual(5000);
      expect(tookMs).toBeLessThan(8000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  }, 12_000);

  it('a real meshlet: the first snapshot arrives, the watch outlives the deadline, SIGINT exits 0', async () => {
    const mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'static', endpoints: { users: ['127.0.0.1:9001'] } },
      accessLog: { enabled: false },
    });
    try {
      const watch = spawnWatch(['--admin', mesh.admin]);
      await watch.shows('127.0.0.1:9001', 8000);
      // The deadline is for the first snapshot only: an idle stream after it is not cut.
      await new Promise((r) => setTimeout(r, 5500));
      expect(watch.proc.exitCode).toBeNull();
      watch.proc.kill('SIGINT');
      expect(await watch.exited).toBe(0);
      expect(watch.err()).toBe('');
      expect(watch.out().match(/^# \d{4}-\d\d-\d\dT/gm)).toHaveLength(1);
    } finally {
      await mesh.close();
    }
  }, 15_000);

  it('a path that goes silent after the first snapshot: keepalive ends the watch (exit 1) within ~10 s', async () => {
    const mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'static', endpoints: { users: ['127.0.0.1:9001'] } },
      accessLog: { enabled: false },
    });
    // A relay to meshlet's gRPC port that, once told, stops forwarding both ways without closing.
    const sockets = new Set<Socket>();
    let silent = false;
    const relay = createServer((client) => {
      const server = connect({ host: '127.0.0.1', port: mesh.daemon.addresses().adminGrpc!.port });
      for (const s of [client, server]) {
        sockets.add(s);
        s.on('error', () => s.destroy());
        s.once('close', () => sockets.delete(s));
      }
      client.on('data', (d) => silent || server.write(d));
      server.on('data', (d) => silent || client.write(d));
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const target = `127.0.0.1:${(relay.address() as AddressInfo).port}`;
    const watch = spawnWatch(['--admin-grpc', target]);
    try {
      await watch.shows('127.0.0.1:9001', 5000);
      silent = true;
      const silentAt = performance.now();
      expect(await watch.exited).toBe(1);
      expect(performance.now() - silentAt).toBeLessThan(12_000);
      const lines = watch.err().trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^meshlet: watching upstreams on ${target}: 14 UNAVAILABLE`));
    } finally {
      watch.proc.kill('SIGKILL');
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => relay.close(resolve));
      await mesh.close();
    }
  }, 15_000);
});
