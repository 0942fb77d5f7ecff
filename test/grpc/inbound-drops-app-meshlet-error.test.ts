// A peer meshlet's inbound listener never passes its app's own x-meshlet-error on: only meshlet names its refusals, so an app cannot make its failures uncounted.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { EchoClient, type EchoStub, echoClient, grpc, unary } from '../helpers/grpc.ts';
import { sampleSum, scrapeMetrics } from '../helpers/metrics.ts';
import { upstreamState } from '../helpers/upstream-state.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';

/** Calls to the failing gRPC app: six per peer, twice the outlier threshold. */
const CALLS = 12;

let pki: TestPki;
/** A grpc-js app whose every Unary call fails INTERNAL (Trailers-Only) with `x-meshlet-error: bad_request`. */
let grpcApp: grpc.Server;
let grpcCalls = 0;
/** An HTTP app answering 400 with `x-meshlet-error: bad_request`. */
let httpApp: Server;
/** Peers B1, B2 (service `orders`, the gRPC app) and B3 (service `audit`, the HTTP app). */
let b1: InProcessMeshlet;
let b2: InProcessMeshlet;
let b3: InProcessMeshlet;
/** A: upstreams `orders` (gRPC, outlier detection) and `audit`. */
let a: InProcessMeshlet;
let client: EchoStub;

beforeAll(async () => {
  pki = await makePki();
  grpcApp = new grpc.Server();
  grpcApp.addService(EchoClient.service, {
    Unary(_call: unknown, callback: grpc.sendUnaryData<unknown>) {
      grpcCalls++;
      // What an app does that copies the metadata of an error its own meshlet gave it.
      const md = new grpc.Metadata();
      md.set('x-meshlet-error', 'bad_request');
      callback({ code: grpc.status.INTERNAL, details: 'the app failed', metadata: md });
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcApp.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    ),
  );
  httpApp = createServer((req, res) => {
    req.resume();
    res.writeHead(400, { 'content-type': 'text/plain', 'x-meshlet-error': 'bad_request' });
    res.end('app says no');
  });
  await new Promise<void>((r) => httpApp.listen(0, '127.0.0.1', r));
  const peer = async (service: string, port: number, protocol?: 'grpc') =>
    startMeshlet({
      service: { name: service, port, ...(protocol === undefined ? {} : { protocol }) },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, service),
    });
  // One after the other: B1 and B2 write the same `orders` key files.
  b1 = await peer('orders', grpcPort, 'grpc');
  b2 = await peer('orders', grpcPort, 'grpc');
  b3 = await peer('audit', (httpApp.address() as AddressInfo).port);
  a = await startMeshlet({
    tls: await tlsFilesConfig(pki, 'web'),
    registry: {
      type: 'static',
      endpoints: { orders: [peerEndpoint(b1), peerEndpoint(b2)], audit: [peerEndpoint(b3)] },
    },
    upstreams: {
      orders: {
        protocol: 'grpc',
        outlierDetection: { consecutive5xx: 3, consecutiveGatewayFailure: 3, baseEjectionTime: 30_000 },
      },
    },
  });
  client = echoClient(new URL(a.outbound).host, 'orders');
}, 30_000);

afterAll(async () => {
  client?.close();
  await a?.close();
  await Promise.all([b1?.close(), b2?.close(), b3?.close()]);
  grpcApp?.forceShutdown();
  httpApp?.closeAllConnections();
  await new Promise((r) => httpApp?.close(r));
});

describe("the inbound listener drops the app's x-meshlet-error", () => {
  it(`gRPC: an app's INTERNAL with x-meshlet-error: bad_request reaches A's caller without it, and ${CALLS} of them eject peers`, async () => {
    for (let i = 0; i < CALLS; i++) {
      const r = await unary(client, { message: `m${i}` });
      expect(r.error?.code).toBe(grpc.status.INTERNAL);
      expect(r.error?.details).toBe('the app failed');
      // Before the fix: ['bad_request'], and B passed it on as its own refusal.
      expect(r.trailers?.get('x-meshlet-error')).toEqual([]);
    }
    expect(grpcCalls).toBe(CALLS);
    // Before the fix: no ejection (every failure read as the peer's refusal of the caller).
    const text = await scrapeMetrics(a.admin);
    expect(sampleSum(text, 'meshlet_outlier_ejections_total', { upstream: 'orders' })).toBeGreaterThan(0);
    expect((await upstreamState(a.admin, 'orders')).healthy).toBeLessThan(2);
  });

  it("HTTP: an app's 400 with x-meshlet-error reaches A's caller as the app's 400, without the header", async () => {
    const res = await request(`${a.outbound}/x`, { headers: { host: 'audit' } });
    expect(res.statusCode).toBe(400);
    expect(await res.body.text()).toBe('app says no');
    // Before the fix: 'bad_request'.
    expect(res.headers['x-meshlet-error']).toBeUndefined();
  });
});
