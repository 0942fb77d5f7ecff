// How meshlet reads an endpoint's gRPC status when it is missing or malformed: UNKNOWN, a failure for the breaker, and valid JSON in the access log.
import * as http2 from 'node:http2';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startMeshlet } from '../helpers/meshlet.ts';
import { rawGrpcCall } from './raw-h2-server.ts';

/** A raw h2c gRPC endpoint answering 200, one empty message, then trailers `trailers`. */
async function endpoint(
  trailers: Record<string, string>,
): Promise<{ server: http2.Http2Server; endpoint: string }> {
  const server = http2.createServer();
  server.on('stream', (s) => {
    s.on('error', () => {});
    s.resume();
    s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    s.on('wantTrailers', () => s.sendTrailers(trailers));
    s.end(Buffer.from([0, 0, 0, 0, 0]));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, endpoint: `127.0.0.1:${(server.address() as { port: number }).port}` };
}

describe('gRPC status accounting', () => {
  it('a missing grpc-status is INTERNAL (what gRPC clients read), a malformed one UNKNOWN: breaker failures, and the access log stays JSON', async () => {
    const missing = await endpoint({ 'x-other': '1' });
    const garbled = await endpoint({ 'grpc-status': 'abc' });
    const mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { missing: [missing.endpoint], garbled: [garbled.endpoint] } },
      upstreams: {
        missing: { protocol: 'grpc', circuitBreaker: { volumeThreshold: 5 } },
        garbled: { protocol: 'grpc', circuitBreaker: { volumeThreshold: 5 } },
      },
    });
    try {
      for (let i = 0; i < 6; i++) {
        await rawGrpcCall(mesh.outbound, 'missing');
        await rawGrpcCall(mesh.outbound, 'garbled');
      }
      const state = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
        upstreams: Record<string, { circuitBreaker: string }>;
      };
      expect(state.upstreams.missing!.circuitBreaker).toBe('open');
      expect(state.upstreams.garbled!.circuitBreaker).toBe('open');
      const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
      expect(metrics).toMatch(
        /^meshlet_grpc_requests_total\{[^}]*upstream="garbled",grpc_code="UNKNOWN"\} [1-9]/m,
      );
      expect(metrics).toMatch(
        /^meshlet_grpc_requests_total\{[^}]*upstream="missing",grpc_code="INTERNAL"\} [1-9]/m,
      );
      expect(metrics).not.toMatch(/upstream="missing",grpc_code="UNKNOWN"/);
      const access = mesh.logs.filter((l) => l.upstream === 'garbled' && l.status !== undefined);
      expect(access.length).toBeGreaterThan(0);
      // The first calls reached the endpoint (UNKNOWN); once the breaker opened, meshlet answered (UNAVAILABLE).
      expect(access[0]!.grpcStatus).toBe(2);
      for (const line of access) expect([2, 14]).toContain(line.grpcStatus);
    } finally {
      await mesh.close();
      for (const e of [missing, garbled]) await new Promise<void>((r) => e.server.close(() => r()));
    }
  });
});
