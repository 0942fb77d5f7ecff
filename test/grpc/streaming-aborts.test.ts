// meshlet's own aborts of a gRPC call whose request body still streams (body over its limit, a stalled body, a per-try timeout): the caller gets its status and the endpoint's stream is reset, not left open.
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { grpcFrame } from './raw-h2-server.ts';

/** An endpoint stream: how it ended (RST_STREAM code; undefined while open). */
interface EndpointStream {
  authority: string;
  closedWith: number | undefined;
}

describe('meshlet aborting a streaming gRPC call', () => {
  let server: http2.Http2Server;
  let mesh: InProcessMeshlet;
  const streams: EndpointStream[] = [];

  beforeAll(async () => {
    // Reads every request and never answers.
    server = http2.createServer();
    server.on('stream', (s, headers) => {
      const seen: EndpointStream = { authority: String(headers[':authority']), closedWith: undefined };
      streams.push(seen);
      s.on('error', () => {});
      s.on('close', () => (seen.closedWith = s.rstCode));
      s.resume();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const quiet = { outlierDetection: { enabled: false }, circuitBreaker: { enabled: false } };
    mesh = await startMeshlet({
      listeners: { outbound: { port: 0, bodyTimeout: '300ms' } },
      registry: { type: 'static', endpoints: { limited: [endpoint], stalled: [endpoint], slow: [endpoint] } },
      upstreams: {
        limited: { protocol: 'grpc', maxRequestBodyBytes: 1024, ...quiet },
        stalled: { protocol: 'grpc', ...quiet },
        slow: { protocol: 'grpc', timeouts: { perTry: '300ms' }, ...quiet },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh?.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  /** Polls until `check` is true or 3 s passed. */
  async function eventually(check: () => boolean): Promise<void> {
    for (let i = 0; i < 150 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
  }

  /**
   * A call to `authority` whose body starts with a 600-byte message and never ends (`more` writes
   * what follows); resolves with the caller's status and the endpoint's stream.
   */
  async function streamingCall(
    authority: string,
    more: (s: http2.ClientHttp2Stream) => void,
  ): Promise<{ grpcStatus: string | undefined; endpoint: EndpointStream }> {
    const session = http2.connect(mesh.outbound);
    session.on('error', () => {});
    const count = streams.length;
    const s = session.request({
      ':method': 'POST',
      ':path': '/pkg.Svc/Upload',
      ':authority': authority,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let grpcStatus: string | undefined;
    // The call is over for its caller once a status came (its own request side may still be open).
    const over = new Promise<void>((resolve) => {
      s.on('response', (h) => {
        grpcStatus ??= h['grpc-status'] as string | undefined;
        if (grpcStatus !== undefined) resolve();
      });
      s.on('trailers', (t) => {
        grpcStatus ??= t['grpc-status'] as string | undefined;
        resolve();
      });
      s.once('close', () => resolve());
    });
    s.on('error', () => {});
    s.resume();
    s.write(grpcFrame(Buffer.alloc(600, 'a')));
    await eventually(() => streams.length > count);
    more(s);
    await over;
    const endpoint = streams[count]!;
    await eventually(() => endpoint.closedWith !== undefined);
    session.destroy();
    return { grpcStatus, endpoint };
  }

  it('a body that outgrows maxRequestBodyBytes: RESOURCE_EXHAUSTED, and the endpoint stream is reset', async () => {
    const r = await streamingCall('limited', (s) => s.write(grpcFrame(Buffer.alloc(600, 'b'))));
    expect(r.grpcStatus).toBe('8');
    expect(r.endpoint.closedWith).toBe(http2.constants.NGHTTP2_CANCEL);
  });

  it('a body that stalls past bodyTimeout: DEADLINE_EXCEEDED, and the endpoint stream is reset', async () => {
    const r = await streamingCall('stalled', () => {});
    expect(r.grpcStatus).toBe('4');
    expect(r.endpoint.closedWith).toBe(http2.constants.NGHTTP2_CANCEL);
  });

  it('no answer within the per-try timeout: DEADLINE_EXCEEDED, and the endpoint stream is reset', async () => {
    // Keeps sending, so only the per-try timeout can end the attempt.
    const r = await streamingCall('slow', (s) => {
      const timer = setInterval(() => s.write(grpcFrame(Buffer.alloc(10))), 50);
      s.once('close', () => clearInterval(timer));
    });
    expect(r.grpcStatus).toBe('4');
    expect(r.endpoint.closedWith).toBe(http2.constants.NGHTTP2_CANCEL);
  });
});
