// gRPC metadata through meshlet's h2c listener: many entries, large values, the 16 KiB limit, binary (-bin) metadata both ways.
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { echoClient, type EchoStub, grpc, unary } from '../helpers/grpc.ts';
import { grpcFrame } from './raw-h2-server.ts';

/** What the endpoint saw of each call: its `x-meta-*` entries, and its `x-blob-bin` value. */
interface Seen {
  meta: number;
  blob: string | undefined;
  bigLength: number;
}

describe('gRPC metadata through meshlet', () => {
  let server: http2.Http2Server;
  let mesh: InProcessMeshlet;
  let client: EchoStub;
  const seen: Seen[] = [];

  beforeAll(async () => {
    // An endpoint that takes many headers, and answers every call with an empty Echo reply,
    // echoing `x-blob-bin` in its response headers and its trailers.
    server = http2.createServer({ maxHeaderListPairs: 5000 });
    server.on('stream', (s, headers) => {
      s.on('error', () => {});
      s.resume();
      const blob = headers['x-blob-bin'] as string | undefined;
      seen.push({
        meta: Object.keys(headers).filter((k) => k.startsWith('x-meta-')).length,
        blob,
        bigLength: String(headers['x-big'] ?? '').length,
      });
      const echo = blob === undefined ? {} : { 'x-blob-bin': blob };
      s.respond({ ':status': 200, 'content-type': 'application/grpc', ...echo }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0', ...echo }));
      s.end(grpcFrame(Buffer.alloc(0)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { meta: [`127.0.0.1:${(server.address() as AddressInfo).port}`] },
      },
      upstreams: { meta: { protocol: 'grpc' } },
      accessLog: { enabled: false },
    });
    client = echoClient(new URL(mesh.outbound).host, 'meta');
  });
  afterAll(async () => {
    client?.close();
    await mesh?.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  /** Metadata with `n` entries `x-meta-NNNN: v` (16 bytes each as HTTP/1.1 would carry them). */
  function many(n: number): grpc.Metadata {
    const md = new grpc.Metadata();
    for (let i = 0; i < n; i++) md.set(`x-meta-${String(i).padStart(4, '0')}`, 'v');
    return md;
  }

  it('300 small metadata entries (5 KB, within 16 KiB) reach the endpoint, as over HTTP/1.1', async () => {
    const before = seen.length;
    const r = await unary(client, { message: 'm' }, { metadata: many(300) });
    // node:http2's default of 128 header fields reset the stream: RESOURCE_EXHAUSTED.
    expect(r.error?.code, r.error?.details).toBeUndefined();
    expect(seen.length).toBe(before + 1);
    expect(seen.at(-1)!.meta).toBe(300);
  });

  it("1,100 entries (over 16 KiB) get meshlet's INTERNAL bad_request, and the endpoint sees nothing", async () => {
    const before = seen.length;
    const r = await unary(client, { message: 'm' }, { metadata: many(1100) });
    expect(r.error?.code).toBe(grpc.status.INTERNAL);
    expect(r.error?.details).toBe('request headers too large');
    expect(r.trailers?.get('x-meshlet-error')).toEqual(['bad_request']);
    expect(seen.length).toBe(before);
  });

  it('a 15 KB metadata value passes whole', async () => {
    const md = new grpc.Metadata();
    md.set('x-big', 'b'.repeat(15_000));
    const r = await unary(client, { message: 'm' }, { metadata: md });
    expect(r.error).toBeUndefined();
    expect(seen.at(-1)!.bigLength).toBe(15_000);
  });

  it('binary (-bin) metadata of every byte value goes both ways unchanged, in headers and trailers', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const md = new grpc.Metadata();
    md.set('x-blob-bin', bytes);
    const headers = await new Promise<grpc.Metadata>((resolve, reject) => {
      const call = client.Unary({ message: 'm' }, md, (err: grpc.ServiceError | null) => {
        if (err !== null) reject(err);
      }) as grpc.ClientUnaryCall;
      call.on('metadata', resolve);
    });
    const r = await unary(client, { message: 'm' }, { metadata: md });
    expect(r.error).toBeUndefined();
    expect(Buffer.from(seen.at(-1)!.blob!, 'base64')).toEqual(bytes);
    expect(headers.get('x-blob-bin')).toEqual([bytes]);
    expect(r.trailers?.get('x-blob-bin')).toEqual([bytes]);
  });
});
