// gRPC calls from an HTTP/1.1 caller (content-type application/grpc on the HTTP/1.1 side of the outbound listener): answers, trailers, meshlet's refusals and an endpoint lost mid-call.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { type EchoServer, startEchoServer } from '../helpers/grpc.ts';
import { grpcFrame, type RawH2Server, startRawH2Server } from './raw-h2-server.ts';

/** An Echo request `{message: "hi"}` (field 1, a 2-byte string), framed. */
const HELLO = grpcFrame(Buffer.from([0x0a, 0x02, 0x68, 0x69]));

describe('gRPC from an HTTP/1.1 caller', () => {
  let echo: EchoServer;
  let dying: RawH2Server;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    echo = await startEchoServer('echo-1');
    // Sends its headers and a message, then loses its connection before the status.
    dying = await startRawH2Server({
      onRequest: (s) => {
        s.conn.headers(s.id, [
          [':status', '200'],
          ['content-type', 'application/grpc'],
        ]);
        s.conn.data(s.id, grpcFrame('partial'));
        setTimeout(() => s.conn.socket.destroy(), 50);
      },
    });
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { echo: [echo.endpoint], dying: [dying.endpoint] } },
      upstreams: {
        echo: { protocol: 'grpc' },
        dying: { protocol: 'grpc', retries: { grpcResponseHold: 0 } },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    echo.close();
    await dying.close();
  });

  const post = (authority: string) =>
    request(`${mesh.outbound}/meshlet.test.v1.Echo/Unary`, {
      method: 'POST',
      headers: { host: authority, 'content-type': 'application/grpc', te: 'trailers' },
      body: HELLO,
    });

  it('is carried to an HTTP/2 gRPC endpoint, its answer and its trailers come back over HTTP/1.1', async () => {
    const res = await post('echo');
    const body = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/^application\/grpc/);
    expect(body.readUInt32BE(1)).toBe(body.length - 5);
    expect(body.includes(Buffer.from('echo-1'))).toBe(true);
    expect(res.trailers).toMatchObject({ 'grpc-status': '0', 'x-served-by': 'echo-1' });
  });

  it("meshlet's refusal is a gRPC answer over HTTP/1.1 too: 200, grpc-status in the headers", async () => {
    const res = await post('nobody');
    expect(await res.body.text()).toBe('');
    expect(res.statusCode).toBe(200);
    expect(res.headers).toMatchObject({
      'content-type': 'application/grpc',
      'grpc-status': '12',
      'x-meshlet-error': 'no_route',
    });
  });

  it('an endpoint lost after the first message: the HTTP/1.1 response is cut, never ended as if whole', async () => {
    const res = await post('dying');
    expect(res.statusCode).toBe(200);
    await expect(res.body.arrayBuffer()).rejects.toThrow();
  });
});
