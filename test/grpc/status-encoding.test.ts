// grpc-message percent-encoding (meshlet's own and the endpoint's), and gRPC's mapping of HTTP/2 stream resets to status codes.
import * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeGrpcMessage,
  GRPC,
  grpcStatusOfStreamReset,
  h2ErrorName,
} from '../../src/errors/grpc-status.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { echoClient, grpc, unary } from '../helpers/grpc.ts';
import { type RawH2Server, startRawH2Server } from './raw-h2-server.ts';

describe('encodeGrpcMessage (gRPC over HTTP/2: Percent-Encoded)', () => {
  it('leaves printable ASCII but % as it is, and encodes % and every other byte of the UTF-8', () => {
    expect(encodeGrpcMessage('no route: "users" (x=1)')).toBe('no route: "users" (x=1)');
    expect(encodeGrpcMessage('100% café')).toBe('100%25 caf%C3%A9');
    expect(encodeGrpcMessage('line\r\nbreak\ttab')).toBe('line%0D%0Abreak%09tab');
    expect(encodeGrpcMessage('🙂')).toBe('%F0%9F%99%82');
    expect(encodeGrpcMessage('\u007f')).toBe('%7F');
  });

  it('decodes back to the message (what a gRPC client does)', () => {
    for (const m of ['100% café', 'a\u0000b', 'ünïcödé %41', '🙂 ok'])
      expect(decodeURIComponent(encodeGrpcMessage(m))).toBe(m);
  });
});

describe('grpcStatusOfStreamReset (PROTOCOL-HTTP2.md "Errors")', () => {
  it('maps each HTTP/2 error code as a gRPC client does', () => {
    expect(grpcStatusOfStreamReset(http2.constants.NGHTTP2_REFUSED_STREAM)).toBe(GRPC.UNAVAILABLE);
    expect(grpcStatusOfStreamReset(http2.constants.NGHTTP2_CANCEL)).toBe(GRPC.CANCELLED);
    expect(grpcStatusOfStreamReset(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)).toBe(GRPC.RESOURCE_EXHAUSTED);
    expect(grpcStatusOfStreamReset(http2.constants.NGHTTP2_INADEQUATE_SECURITY)).toBe(GRPC.PERMISSION_DENIED);
    for (const code of [0, 1, 2, 3, 4, 5, 6, 9, 10, 13, 0x99])
      expect(grpcStatusOfStreamReset(code), String(code)).toBe(GRPC.INTERNAL);
  });

  it('names the codes as RFC 9113 does, and unknown ones in hex', () => {
    expect(h2ErrorName(2)).toBe('INTERNAL_ERROR');
    expect(h2ErrorName(8)).toBe('CANCEL');
    expect(h2ErrorName(13)).toBe('HTTP_1_1_REQUIRED');
    expect(h2ErrorName(0x99)).toBe('0x99');
  });
});

describe('grpc-message through meshlet', () => {
  let raw: RawH2Server;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    // The endpoint answers Trailers-Only NOT_FOUND with an encoded message (a é, a %).
    raw = await startRawH2Server({
      onRequest: (s) =>
        s.conn.headers(
          s.id,
          [
            [':status', '200'],
            ['content-type', 'application/grpc'],
            ['grpc-status', '5'],
            ['grpc-message', 'caf%C3%A9 100%25 gone'],
          ],
          true,
        ),
    });
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { enc: [raw.endpoint] } },
      upstreams: { enc: { protocol: 'grpc' } },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await raw.close();
  });

  it("meshlet's own message is percent-encoded: a % in it reaches a grpc-js client intact", async () => {
    // A valid authority (RFC 3986: '%' only as an escape) whose name carries a '%' into the message.
    const client = echoClient(new URL(mesh.outbound).host, '100%25-sure');
    try {
      const r = await unary(client, { message: 'x' });
      expect(r.error?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(r.error?.details).toBe('no route or upstream matches "100%25-sure"');
    } finally {
      client.close();
    }
  });

  it("the endpoint's encoded message passes untouched (never encoded twice), in one HEADERS frame", async () => {
    const client = echoClient(new URL(mesh.outbound).host, 'enc');
    try {
      const r = await unary(client, { message: 'x' });
      expect(r.error?.code).toBe(grpc.status.NOT_FOUND);
      expect(r.error?.details).toBe('café 100% gone');
    } finally {
      client.close();
    }
  });
});
