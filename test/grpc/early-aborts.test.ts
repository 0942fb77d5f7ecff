// gRPC attempts cut while their request body is still streaming (a client cancel, a tiny deadline) must leave the daemon serving: found by hostile testing.
import * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { echoClient, type EchoServer, type EchoStub, grpc, startEchoServer, unary } from '../helpers/grpc.ts';

/** Whether the daemon still answers its admin `/live` within 2 s (a crashed or wedged one does not). */
async function live(m: MeshletProcess): Promise<number | string> {
  return fetch(`${m.admin}/live`, { signal: AbortSignal.timeout(2000) }).then(
    (r) => r.status,
    (e: Error) => `no answer (${e.name})`,
  );
}

describe('gRPC attempts cut early', () => {
  let echo: EchoServer;
  let mesh: MeshletProcess;
  let client: EchoStub;

  beforeAll(async () => {
    echo = await startEchoServer('echo');
    // A separate process: a crash or a busy loop shows as an admin API that stops answering.
    mesh = await spawnMeshlet({
      registry: { type: 'static', endpoints: { echo: [echo.endpoint] } },
      upstreams: { echo: { protocol: 'grpc' } },
      listeners: { adminGrpc: { enabled: false } },
      accessLog: { enabled: false },
    });
    client = echoClient(new URL(mesh.outbound).host, 'echo');
  });
  afterAll(async () => {
    client?.close();
    mesh?.proc.kill('SIGKILL');
    await echo?.close();
  });

  it('client-streaming calls cancelled 0-3 ms after their first message: CANCELLED, and the daemon serves on', async () => {
    for (let i = 0; i < 12; i++) {
      const code = await new Promise<number | string>((resolve) => {
        const call = client.ClientStream(() => {}) as grpc.ClientWritableStream<{ message: string }>;
        call.on('error', () => {});
        call.on('status', (s: grpc.StatusObject) => resolve(s.code));
        call.write({ message: 'hello' });
        setTimeout(() => call.cancel(), i % 4);
        setTimeout(() => resolve('no status within 3 s'), 3000);
      });
      expect(code).toBe(grpc.status.CANCELLED);
    }
    expect(await live(mesh)).toBe(200);
    expect((await unary(client, { message: 'after' })).reply?.message).toBe('after');
  });

  it('calls whose grpc-timeout (1-5 ms) runs out while the body still streams get DEADLINE_EXCEEDED or an answer, and the daemon serves on', async () => {
    const session = http2.connect(mesh.outbound);
    session.on('error', () => {});
    try {
      for (let i = 0; i < 40; i++) {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/meshlet.test.v1.Echo/Unary',
          ':authority': 'echo',
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${1 + (i % 5)}m`,
        });
        // The message follows the headers a moment later: meshlet sends the body as a stream.
        setTimeout(() => stream.end(Buffer.from([0, 0, 0, 0, 0])), 2);
        const status = await new Promise<string>((resolve) => {
          let seen = '';
          stream.on('response', (h) => (seen = String(h['grpc-status'] ?? seen)));
          stream.on('trailers', (t) => (seen = String(t['grpc-status'] ?? seen)));
          stream.on('error', () => {});
          stream.on('close', () => resolve(seen));
          stream.resume();
          setTimeout(() => resolve('no answer within 2 s'), 2000);
        });
        expect(['0', String(grpc.status.DEADLINE_EXCEEDED)]).toContain(status);
      }
    } finally {
      session.destroy();
    }
    expect(await live(mesh)).toBe(200);
    // Calls refused for a deadline too short to start an attempt count against no breaker.
    const state = (await (await fetch(`${mesh.admin}/upstreams`)).json()) as {
      upstreams: Record<string, { circuitBreaker: string }>;
    };
    expect(state.upstreams.echo!.circuitBreaker).toBe('closed');
    expect((await unary(client, { message: 'still' })).reply?.message).toBe('still');
  });
});
