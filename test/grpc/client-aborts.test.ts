// A gRPC caller that leaves mid-call (RST_STREAM, GOAWAY, a closed session): the endpoint's stream is cancelled, nothing is charged to the endpoint, no request stays counted.
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { echoClient, type EchoReply, type EchoStub, grpc } from '../helpers/grpc.ts';
import { grpcFrame } from './raw-h2-server.ts';

/** An endpoint stream as the endpoint saw it end. */
interface EndpointStream {
  probe: string;
  /** RST_STREAM code it ended with, once closed (8: CANCEL); undefined while open. */
  closedWith: number | undefined;
}

/** How the caller leaves. */
type Leave = 'rst' | 'goaway-then-close' | 'session-destroy' | 'socket-destroy';

describe('gRPC callers that leave mid-call', () => {
  let server: http2.Http2Server;
  let mesh: InProcessMeshlet;
  const streams: EndpointStream[] = [];

  beforeAll(async () => {
    // `x-probe: before` never answers; `after` sends headers and one message, then waits.
    server = http2.createServer();
    server.on('stream', (s, headers) => {
      const seen: EndpointStream = { probe: String(headers['x-probe']), closedWith: undefined };
      streams.push(seen);
      s.on('error', () => {});
      s.on('close', () => (seen.closedWith = s.rstCode));
      s.resume();
      if (seen.probe === 'after') {
        s.respond({ ':status': 200, 'content-type': 'application/grpc' });
        s.write(grpcFrame(Buffer.alloc(0)));
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { held: [`127.0.0.1:${(server.address() as AddressInfo).port}`] },
      },
      upstreams: {
        held: {
          protocol: 'grpc',
          // The least failure would eject the endpoint and open the breaker: neither may happen.
          outlierDetection: { consecutive5xx: 1, consecutiveGatewayFailure: 1, maxEjectionPercent: 100 },
          circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
        },
      },
    });
  });
  afterAll(async () => {
    await mesh?.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  /** meshlet's view: in-flight gauge, and the endpoint's state. */
  async function meshletState(): Promise<{
    active: string | undefined;
    endpoint: unknown;
    breaker: unknown;
  }> {
    const metrics = await (await fetch(`${mesh.admin}/metrics`)).text();
    const active = /^meshlet_requests_active\{direction="outbound",upstream="held"\} (\d+)$/m.exec(
      metrics,
    )?.[1];
    const view = (await (await fetch(`${mesh.admin}/upstreams`)).json()) as {
      upstreams: Record<string, { endpoints: { state: string; active: number }[]; circuitBreaker: string }>;
    };
    const held = view.upstreams.held!;
    return { active, endpoint: held.endpoints[0], breaker: held.circuitBreaker };
  }

  /** Polls until `check` is true or 2 s passed. */
  async function eventually(check: () => boolean): Promise<void> {
    for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
  }

  /**
   * One call that leaves as `leave` says once the endpoint has its stream (`before`) or the first
   * message arrived (`after`); its request body has ended (the call's one message was sent) or is
   * still streaming (a client-streaming or bidi call, the case undici's abort left open).
   */
  async function leaveMidCall(
    probe: 'before' | 'after',
    leave: Leave,
    bodyEnds = true,
  ): Promise<EndpointStream> {
    const session = http2.connect(mesh.outbound);
    session.on('error', () => {});
    const count = streams.length;
    const s = session.request({
      ':method': 'POST',
      ':path': '/pkg.Svc/Call',
      ':authority': 'held',
      'content-type': 'application/grpc',
      te: 'trailers',
      'x-probe': probe,
    });
    s.on('error', () => {});
    s.resume();
    if (bodyEnds) s.end(grpcFrame('req'));
    else s.write(grpcFrame('req'));
    if (probe === 'after') await new Promise((r) => s.once('data', r));
    await eventually(() => streams.length > count);
    if (leave === 'rst') s.close(http2.constants.NGHTTP2_CANCEL);
    else if (leave === 'goaway-then-close') {
      session.goaway(http2.constants.NGHTTP2_NO_ERROR);
      setTimeout(() => session.destroy(), 50);
    } else if (leave === 'session-destroy') session.destroy();
    else session.socket.destroy();
    const seen = streams[count]!;
    await eventually(() => seen.closedWith !== undefined);
    session.destroy();
    return seen;
  }

  const accessLines = (): Record<string, unknown>[] => mesh.logs.filter((l) => l.msg === 'access');

  for (const bodyEnds of [true, false]) {
    for (const probe of ['before', 'after'] as const) {
      for (const leave of ['rst', 'goaway-then-close', 'session-destroy', 'socket-destroy'] as const) {
        it(`${leave} ${probe} the response started, body ${bodyEnds ? 'ended' : 'streaming'}: the endpoint's stream is cancelled, nothing is charged or left counted`, async () => {
          const lines = accessLines().length;
          const seen = await leaveMidCall(probe, leave, bodyEnds);
          expect(seen.closedWith).toBe(http2.constants.NGHTTP2_CANCEL);
          await eventually(() => accessLines().length > lines);
          expect(accessLines().at(-1)).toMatchObject({ status: 499, grpcStatus: grpc.status.CANCELLED });
          expect(await meshletState()).toEqual({
            active: '0',
            endpoint: expect.objectContaining({ state: 'healthy', active: 0 }),
            breaker: 'closed',
          });
        });
      }
    }
  }

  it('a grpc-js bidi call cancelled by its client: CANCELLED, and the endpoint stream is cancelled too', async () => {
    const echo: EchoStub = echoClient(new URL(mesh.outbound).host, 'held');
    try {
      const count = streams.length;
      const call = echo.Bidi(new grpc.Metadata({}), {}) as grpc.ClientDuplexStream<
        { message: string },
        EchoReply
      >;
      const status = new Promise<grpc.StatusObject>((r) => call.on('status', r));
      call.on('error', () => {});
      call.write({ message: 'one' });
      await eventually(() => streams.length > count);
      call.cancel();
      expect((await status).code).toBe(grpc.status.CANCELLED);
      const seen = streams[count]!;
      await eventually(() => seen.closedWith !== undefined);
      expect(seen.closedWith).toBe(http2.constants.NGHTTP2_CANCEL);
      expect((await meshletState()).active).toBe('0');
    } finally {
      echo.close();
    }
  });
});
