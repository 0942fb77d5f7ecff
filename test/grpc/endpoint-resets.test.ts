// An endpoint that refuses a gRPC call's stream, sends GOAWAY mid-call or drops its connection: what is replayed (only what is safe) and what the caller gets.
import { afterEach, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import {
  grpcFrame,
  H2_ERROR,
  type RawH2Server,
  rawGrpcCall,
  type RawStream,
  startRawH2Server,
} from './raw-h2-server.ts';

describe('gRPC calls whose endpoint resets, refuses or goes away', () => {
  const servers: RawH2Server[] = [];
  let mesh: InProcessMeshlet | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
    for (const s of servers.splice(0)) await s.close();
  });

  /** A raw endpoint: its first stream gets `first`, every later one the answer `name`. */
  async function endpoint(name: string, first?: (s: RawStream) => void): Promise<RawH2Server> {
    let n = 0;
    const raw = await startRawH2Server({
      onRequest: (s) => (n++ === 0 && first !== undefined ? first(s) : s.conn.ok(s.id, name)),
    });
    servers.push(raw);
    return raw;
  }

  async function mesh2(endpoints: RawH2Server[]): Promise<InProcessMeshlet> {
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { svc: endpoints.map((e) => e.endpoint) } },
      upstreams: {
        svc: {
          protocol: 'grpc',
          loadBalancer: 'round_robin',
          outlierDetection: { enabled: false },
          circuitBreaker: { enabled: false },
        },
      },
      accessLog: { enabled: false },
    });
    return mesh;
  }

  it('REFUSED_STREAM before an answer (RFC 9113 §8.7: not processed) is replayed, and the call succeeds', async () => {
    const refusing = await endpoint('a', (s) => s.conn.rst(s.id, H2_ERROR.REFUSED_STREAM));
    const m = await mesh2([refusing]);
    const a = await rawGrpcCall(m.outbound, 'svc');
    expect(a.trailers?.['grpc-status']).toBe('0');
    expect(a.body).toBe('a');
    expect(refusing.streams).toHaveLength(2);
  });

  it('GOAWAY whose last-stream-id is below the call (not processed) is replayed on a new connection', async () => {
    const leaving = await endpoint('b', (s) => {
      s.conn.goaway(Math.max(0, s.id - 2), H2_ERROR.NO_ERROR);
      setTimeout(() => s.conn.socket.destroy(), 20);
    });
    const m = await mesh2([leaving]);
    const a = await rawGrpcCall(m.outbound, 'svc');
    expect(a.trailers?.['grpc-status']).toBe('0');
    expect(a.body).toBe('b');
    expect(leaving.streams).toHaveLength(2);
  });

  it('GOAWAY that covers the call (being processed) lets it finish on the old connection, nothing replayed', async () => {
    const draining = await endpoint('c', (s) => {
      s.conn.headers(s.id, [
        [':status', '200'],
        ['content-type', 'application/grpc'],
      ]);
      s.conn.data(s.id, grpcFrame('first'));
      s.conn.goaway(s.id, H2_ERROR.NO_ERROR);
      setTimeout(() => {
        s.conn.data(s.id, grpcFrame('second'));
        s.conn.headers(s.id, [['grpc-status', '0']], true);
      }, 50);
    });
    const m = await mesh2([draining]);
    const a = await rawGrpcCall(m.outbound, 'svc');
    expect(a.trailers?.['grpc-status']).toBe('0');
    expect(a.body).toBe(`first${grpcFrame('second').toString()}`);
    expect(draining.streams).toHaveLength(1);
  });

  it('a connection lost before any answer is retried on another endpoint (what a client reads as UNAVAILABLE)', async () => {
    const dying = await endpoint('d', (s) => s.conn.socket.destroy());
    const fine = await endpoint('e');
    const m = await mesh2([dying, fine]);
    // Round robin from either: within two calls the dying endpoint's first stream is hit.
    for (let i = 0; i < 2; i++) {
      const a = await rawGrpcCall(m.outbound, 'svc');
      expect(a.trailers?.['grpc-status']).toBe('0');
    }
    expect(dying.streams.length).toBeGreaterThanOrEqual(1);
  });
});
