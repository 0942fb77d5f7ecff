// Issue 12: every gRPC call shape through meshlet's outbound listener (h2c, by authority) and a per-upstream listener.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, spawnMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  echoClient,
  type EchoReply,
  type EchoServer,
  type EchoStub,
  grpc,
  startEchoServer,
  unary,
} from '../helpers/grpc.ts';

/** Collects a server stream's replies and its final status. */
function collect(
  call: grpc.ClientReadableStream<EchoReply>,
): Promise<{ replies: EchoReply[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const replies: EchoReply[] = [];
    call.on('data', (r: EchoReply) => replies.push(r));
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => resolve({ replies, status }));
  });
}

describe('gRPC through meshlet (h2c)', () => {
  let server: EchoServer;
  let http1: TestUpstream;
  let mesh: InProcessMeshlet;
  const clients: EchoStub[] = [];
  let perUpstream: string;

  beforeAll(async () => {
    server = await startEchoServer('users-1');
    http1 = await startUpstream();
    const port = await closedPort();
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: [server.endpoint], web: [http1.endpoint] } },
      upstreams: { users: { protocol: 'grpc', port } },
      accessLog: { enabled: false },
    });
    perUpstream = `127.0.0.1:${port}`;
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await mesh.close();
    server.close();
    await http1.close();
  });

  for (const via of ['outbound listener', 'per-upstream listener'] as const) {
    const client = (): EchoStub => {
      const target = via === 'outbound listener' ? new URL(mesh.outbound).host : perUpstream;
      const c = echoClient(target, 'users');
      clients.push(c);
      return c;
    };

    it(`${via}: unary returns the reply, status OK and the trailing metadata`, async () => {
      const md = new grpc.Metadata();
      md.set('x-echo', 'hello-trailer');
      const result = await unary(client(), { message: 'hi' }, { metadata: md });
      expect(result.error).toBeUndefined();
      expect(result.reply).toMatchObject({ message: 'hi', servedBy: 'users-1' });
      expect(result.trailers?.get('x-trailer')).toEqual(['hello-trailer']);
      expect(result.trailers?.get('x-served-by')).toEqual(['users-1']);
    });

    it(`${via}: server streaming delivers 1,000 messages in order`, async () => {
      const call = client().ServerStream({
        message: 'm',
        count: 1000,
      }) as grpc.ClientReadableStream<EchoReply>;
      const { replies, status } = await collect(call);
      expect(status.code).toBe(grpc.status.OK);
      expect(replies).toHaveLength(1000);
      expect(replies.map((r) => r.index)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
      expect(status.metadata.get('x-served-by')).toEqual(['users-1']);
    });

    it(`${via}: client streaming joins every message`, async () => {
      const reply = await new Promise<EchoReply>((resolve, reject) => {
        const call = client().ClientStream((err: grpc.ServiceError | null, r: EchoReply) =>
          err === null ? resolve(r) : reject(err),
        ) as grpc.ClientWritableStream<{ message: string }>;
        for (let i = 0; i < 50; i++) call.write({ message: `p${i}` });
        call.end();
      });
      expect(reply.index).toBe(50);
      expect(reply.message.split(',')).toHaveLength(50);
    });

    it(`${via}: bidi answers each message as it arrives`, async () => {
      const call = client().Bidi() as grpc.ClientDuplexStream<{ message: string }, EchoReply>;
      const got: string[] = [];
      const done = new Promise<grpc.StatusObject>((resolve) => {
        call.on('data', (r: EchoReply) => {
          got.push(r.message);
          if (got.length < 20) call.write({ message: `b${got.length}` });
          else call.end();
        });
        call.on('status', resolve);
      });
      call.write({ message: 'b0' });
      const status = await done;
      expect(status.code).toBe(grpc.status.OK);
      expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `b${i}`));
    });

    it(`${via}: a non-retriable code from the server passes through untouched`, async () => {
      const result = await unary(client(), { message: 'x', failCode: grpc.status.NOT_FOUND });
      expect(result.error?.code).toBe(grpc.status.NOT_FOUND);
      expect(result.error?.details).toBe('failed with 5');
    });
  }

  it("meshlet's own refusal to a gRPC caller is a gRPC status (no route → UNIMPLEMENTED)", async () => {
    const c = echoClient(new URL(mesh.outbound).host, 'nobody');
    clients.push(c);
    const result = await unary(c, { message: 'x' });
    expect(result.error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(result.trailers?.get('x-meshlet-error')).toEqual(['no_route']);
  });

  it('HTTP/1.1 on the same port still works', async () => {
    const res = await request(`${mesh.outbound}/v1`, { headers: { host: 'web' } });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });

  it('a real `meshlet run` process carries a unary call and a server stream', async () => {
    const proc = await spawnMeshlet({
      registry: { type: 'static', endpoints: { users: [server.endpoint] } },
      upstreams: { users: { protocol: 'grpc' } },
    });
    try {
      const c = echoClient(new URL(proc.outbound).host, 'users');
      clients.push(c);
      const r = await unary(c, { message: 'from a process' });
      expect(r.reply?.message).toBe('from a process');
      const call = c.ServerStream({ message: 'p', count: 100 }) as grpc.ClientReadableStream<EchoReply>;
      const { replies, status } = await collect(call);
      expect(status.code).toBe(grpc.status.OK);
      expect(replies).toHaveLength(100);
    } finally {
      proc.proc.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    }
  });
});
