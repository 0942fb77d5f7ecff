// SIGTERM drain with long-lived work in flight: a gRPC server stream, a WebSocket, idle HTTP/1.1 keep-alive connections; and a second SIGTERM.
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { describe, expect, it, type TestContext } from 'vitest';
import { EchoClient, echoClient, grpc } from '../helpers/grpc.ts';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { closed, openWs, startWsEcho, type WsEcho } from '../tunnel/ws-helpers.ts';
import { until } from './wrapper-helpers.ts';

/** A gRPC Echo server whose ServerStream sends one reply every `everyMs`. */
async function slowStreamServer(everyMs: number): Promise<{ port: number; close(): void }> {
  const server = new grpc.Server();
  server.addService(EchoClient.service, {
    ServerStream(call: grpc.ServerWritableStream<{ message: string; count: number }, unknown>) {
      let i = 0;
      const timer = setInterval(() => {
        if (call.cancelled) return clearInterval(timer);
        call.write({ message: call.request.message, servedBy: 'slow', index: i++ });
        if (i < call.request.count) return;
        clearInterval(timer);
        call.end();
      }, everyMs);
    },
  } as never);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    ),
  );
  return { port, close: () => server.forceShutdown() };
}

/** A raw HTTP/1.1 keep-alive connection: sends GETs for `host`, collects what comes back, sees the close. */
class KeepAlive {
  readonly socket: Socket;
  text = '';
  ended = false;
  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => (this.text += d.toString('latin1')));
    const end = (): void => {
      this.ended = true;
    };
    this.socket.on('end', end);
    this.socket.on('close', end);
    this.socket.on('error', end);
  }
  /** Sends one GET and resolves with the response head once its body (chunked or not) is complete. */
  async get(host: string): Promise<string> {
    const from = this.text.length;
    this.socket.write(`GET /k HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
    await until(() => /\r\n\r\n[\s\S]*\}/.test(this.text.slice(from)), 3000, 'a keep-alive answer');
    return this.text.slice(from, this.text.indexOf('\r\n\r\n', from)).toLowerCase();
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** What one case started: stopped when the case ends, whatever happened. */
interface Started {
  mesh?: MeshletProcess;
  grpcServer?: { close(): void };
  ws?: WsEcho;
  http?: TestUpstream;
}

/** Stops what a case started (meshlet by SIGKILL if it still runs). */
async function stop(s: Started): Promise<void> {
  if (s.mesh !== undefined && s.mesh.proc.exitCode === null && s.mesh.proc.signalCode === null)
    s.mesh.proc.kill('SIGKILL');
  s.grpcServer?.close();
  await s.ws?.close();
  await s.http?.close();
}

// Each case has its own meshlet process and servers, so the cases run side by side.
describe.concurrent('SIGTERM drain with long-lived work', () => {
  /** meshlet in front of the slow stream (`g`), the WebSocket echo (`chat`) and an HTTP echo (`h`). */
  async function start(s: Started, streamEveryMs: number, drainDelay: string): Promise<MeshletProcess> {
    const g = await slowStreamServer(streamEveryMs);
    s.grpcServer = g;
    const ws = (s.ws = await startWsEcho());
    const http = (s.http = await startUpstream());
    s.mesh = await spawnMeshlet({
      listeners: { adminGrpc: { enabled: false } },
      registry: {
        type: 'static',
        endpoints: {
          g: [{ address: '127.0.0.1', port: g.port, protocol: 'grpc' }],
          chat: [ws.endpoint],
          h: [http.endpoint],
        },
      },
      accessLog: { enabled: false },
      shutdown: { drainDelay, drainTimeout: '3s' },
    } as never);
    return s.mesh;
  }

  /** Opens the server stream (`count` replies); resolves with the replies' count and the final status. */
  function openStream(port: number, count: number) {
    const client = echoClient(`127.0.0.1:${port}`, 'g');
    const replies: number[] = [];
    const call = client.ServerStream({ message: 'tick', count }) as grpc.ClientReadableStream<{
      index: number;
    }>;
    call.on('data', (d: { index: number }) => replies.push(d.index));
    call.on('error', () => undefined);
    const done = new Promise<{ replies: number; code: number; details: string }>((resolve) =>
      call.on('status', (s: grpc.StatusObject) => {
        client.close();
        resolve({ replies: replies.length, code: s.code, details: s.details });
      }),
    );
    return { replies, done };
  }

  it('/ready 503 at once; keep-alive answers say connection: close; then no new connection, the WebSocket gets 1001, the stream finishes; exit 0', async ({
    onTestFinished,
  }: TestContext) => {
    const s: Started = {};
    onTestFinished(() => stop(s));
    const m = await start(s, 100, '1s');
    const port = Number(new URL(m.outbound).port);
    const stream = openStream(port, 25); // 2.5 s: outlives the drain delay, ends inside the drain timeout
    const socket = await openWs(`ws://127.0.0.1:${port}/room`, { host: 'chat' });
    const wsClosed = closed(socket);
    const busy = new KeepAlive(port);
    const idle = new KeepAlive(port);
    expect(await busy.get('h')).not.toContain('connection: close');
    expect(await idle.get('h')).not.toContain('connection: close');
    await until(() => stream.replies.length >= 2, 3000, 'the stream is flowing');

    const t0 = performance.now();
    m.proc.kill('SIGTERM');
    // 1. At once (well inside the 1 s drain delay): not ready, so Kubernetes stops sending.
    let ready = 200;
    while (ready !== 503 && performance.now() - t0 < 500) {
      const res = await request(`${m.admin}/ready`);
      await res.body.dump();
      ready = res.statusCode;
    }
    expect(ready).toBe(503);
    // 2. During the drain delay a keep-alive connection is still served, told to close, and closed.
    expect(performance.now() - t0).toBeLessThan(900);
    expect(await busy.get('h')).toContain('connection: close');
    await until(() => busy.ended, 1000, 'the told connection closed');
    // 3. After the delay: the listener refuses new connections, the idle keep-alive one is closed,
    //    the WebSocket goes away with 1001; the gRPC stream goes on.
    expect(await wsClosed).toBe(1001);
    await until(() => idle.ended, 1000, 'the idle keep-alive connection closed');
    expect(await canConnect(port)).toBe(false);
    expect(stream.replies.length).toBeLessThan(25);
    // 4. The stream finishes within the drain timeout, then meshlet exits 0.
    expect(await stream.done).toEqual({ replies: 25, code: grpc.status.OK, details: 'OK' });
    expect(await m.exited).toBe(0);
    expect(performance.now() - t0).toBeLessThan(4000);
    const stopped = m.stdout.map((l) => JSON.parse(l) as { msg: string; outcome?: string });
    expect(stopped.find((l) => l.msg === 'meshlet stopped')?.outcome).toBe('drained');
  });

  it('a stream longer than drainTimeout is cut at the deadline: UNAVAILABLE to the client (it retries elsewhere), exit 0', async ({
    onTestFinished,
  }: TestContext) => {
    const s: Started = {};
    onTestFinished(() => stop(s));
    const m = await start(s, 100, '500ms');
    const port = Number(new URL(m.outbound).port);
    const stream = openStream(port, 100); // 10 s: outlives drainDelay 0.5 s + drainTimeout 3 s
    await until(() => stream.replies.length >= 2, 3000, 'the stream is flowing');
    const t0 = performance.now();
    m.proc.kill('SIGTERM');
    const end = await stream.done;
    const after = performance.now() - t0;
    expect(end.code).toBe(grpc.status.UNAVAILABLE);
    expect(end.replies).toBeLessThan(100);
    expect(after).toBeGreaterThan(3300);
    expect(after).toBeLessThan(5000);
    expect(await m.exited).toBe(0);
    const logs = m.stdout.map((l) => JSON.parse(l) as { msg: string; outcome?: string });
    expect(logs.some((l) => l.msg === 'drain timeout: closing remaining connections')).toBe(true);
    expect(logs.find((l) => l.msg === 'meshlet stopped')?.outcome).toBe('timeout');
  });

  it('a second SIGTERM (or SIGINT) during the drain joins it: the in-flight request completes and meshlet exits 0', async ({
    onTestFinished,
  }: TestContext) => {
    // The two signals on two meshlets side by side.
    await Promise.all(
      (['SIGTERM', 'SIGINT'] as const).map(async (second) => {
        const s: Started = {};
        onTestFinished(() => stop(s));
        const http = (s.http = await startUpstream((req, res) => {
          req.resume();
          setTimeout(() => res.end('slow done'), 1000).unref();
        }));
        const m = (s.mesh = await spawnMeshlet({
          listeners: { adminGrpc: { enabled: false } },
          registry: { type: 'static', endpoints: { h: [http.endpoint] } },
          shutdown: { drainDelay: '300ms', drainTimeout: '3s' },
        } as never));
        const inflight = request(`${m.outbound}/`, { headers: { host: 'h' } }).then(
          async (r) => `${r.statusCode} ${await r.body.text()}`,
          (err: Error) => `failed: ${err.message}`,
        );
        await until(() => http.requests.length === 1, 3000, 'the request reached the upstream');
        m.proc.kill('SIGTERM');
        await until(() => m.stdout.some((l) => l.includes('"draining"')), 2000, 'the drain began');
        m.proc.kill(second);
        expect(await inflight).toBe('200 slow done');
        expect(await m.exited).toBe(0);
        expect(m.proc.signalCode).toBeNull();
        expect(m.stdout.some((l) => l.includes('"meshlet stopped"'))).toBe(true);
        await http.close();
        s.http = undefined;
      }),
    );
  });
});
