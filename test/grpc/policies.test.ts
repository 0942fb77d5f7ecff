// Issue 12: gRPC-aware policies — per-call balancing, retries judged by grpc-status, grpc-timeout as the deadline.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import {
  echoClient,
  type EchoReply,
  type EchoServer,
  type EchoStub,
  grpc,
  startEchoServer,
  unary,
} from '../helpers/grpc.ts';

describe('gRPC policies', () => {
  const servers: EchoServer[] = [];
  let failing: EchoServer;
  let healthy: EchoServer;
  let slow: EchoServer;
  let mesh: InProcessMeshlet;
  const clients: EchoStub[] = [];
  const client = (authority: string): EchoStub => {
    const c = echoClient(new URL(mesh.outbound).host, authority);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) servers.push(await startEchoServer(`even-${i}`));
    failing = await startEchoServer('failing', { failUnary: grpc.status.UNAVAILABLE });
    healthy = await startEchoServer('healthy');
    slow = await startEchoServer('slow');
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          even: servers.map((s) => s.endpoint),
          flaky: [failing.endpoint, healthy.endpoint],
          slow: [slow.endpoint],
        },
      },
      upstreams: {
        even: { protocol: 'grpc' },
        // Ejection would hide the failing endpoint from the later calls; this test is about retries.
        flaky: { protocol: 'grpc', outlierDetection: { enabled: false }, circuitBreaker: { enabled: false } },
        slow: { protocol: 'grpc' },
      },
    });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await mesh.close();
    for (const s of [...servers, failing, healthy, slow]) s.close();
  });

  it('one client channel, 3 endpoints, 3,000 unary calls: each endpoint gets 1,000 ± 15 %', async () => {
    const c = client('even');
    const served = new Map<string, number>();
    for (let batch = 0; batch < 30; batch++) {
      const results = await Promise.all(Array.from({ length: 100 }, () => unary(c, { message: 'x' })));
      for (const r of results) {
        expect(r.error).toBeUndefined();
        served.set(r.reply!.servedBy, (served.get(r.reply!.servedBy) ?? 0) + 1);
      }
    }
    expect([...served.keys()].sort()).toEqual(['even-0', 'even-1', 'even-2']);
    for (const n of served.values()) {
      expect(n).toBeGreaterThanOrEqual(850);
      expect(n).toBeLessThanOrEqual(1150);
    }
  });

  it('UNAVAILABLE in the response headers is retried onto another endpoint: the client sees OK', async () => {
    const c = client('flaky');
    const before = failing.calls.length;
    const results = await Promise.all(Array.from({ length: 20 }, () => unary(c, { message: 'retry-me' })));
    for (const r of results) {
      expect(r.error).toBeUndefined();
      expect(r.reply?.servedBy).toBe('healthy');
    }
    // Round robin sent about half of the first attempts to the failing endpoint, and each was replayed.
    expect(failing.calls.length - before).toBeGreaterThan(0);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_retries_total\{upstream="flaky",reason="unavailable"\} [1-9]/m);
  });

  it('UNAVAILABLE after a response message is not retried; the caller gets the messages and the status', async () => {
    const c = client('even');
    const call = c.ServerStream({
      message: 's',
      count: 3,
      failCode: grpc.status.UNAVAILABLE,
    }) as grpc.ClientReadableStream<EchoReply>;
    const replies: EchoReply[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('data', (r: EchoReply) => replies.push(r));
      call.on('error', () => {});
      call.on('status', resolve);
    });
    expect(replies).toHaveLength(3);
    expect(status.code).toBe(grpc.status.UNAVAILABLE);
    const serving = servers.filter((s) => s.calls.some((x) => x.method === 'ServerStream'));
    expect(serving.flatMap((s) => s.calls.filter((x) => x.method === 'ServerStream'))).toHaveLength(1);
  });

  it('a non-retriable status in the headers passes through untouched, sent once', async () => {
    const c = client('even');
    const before = servers.reduce((n, s) => n + s.calls.length, 0);
    const r = await unary(c, { message: 'x', failCode: grpc.status.INVALID_ARGUMENT });
    expect(r.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.error?.details).toBe('failed with 3');
    expect(servers.reduce((n, s) => n + s.calls.length, 0) - before).toBe(1);
    // Counted by gRPC code per upstream; the access line names the method and the grpc-status.
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(
      /^meshlet_grpc_requests_total\{direction="outbound",upstream="even",grpc_code="INVALID_ARGUMENT"\} 1$/m,
    );
    expect(metrics).toMatch(
      /^meshlet_grpc_requests_total\{direction="outbound",upstream="even",grpc_code="OK"\} \d{4}$/m,
    );
    const line = mesh.logs.find((l) => l.msg === 'access' && l.grpcStatus === 3);
    expect(line).toMatchObject({ path: '/meshlet.test.v1.Echo/Unary', upstream: 'even', status: 200 });
  });

  it("grpc-timeout 200m against a slow server → DEADLINE_EXCEEDED at the deadline, not the server's 2 s; the server saw the remaining budget", async () => {
    const c = client('slow');
    const md = new grpc.Metadata();
    // Sent by hand (no client-side deadline), so meshlet's own deadline is what ends the call.
    md.set('grpc-timeout', '200m');
    const started = performance.now();
    const r = await unary(c, { message: 'late', delayMs: 2000 }, { metadata: md });
    const elapsed = performance.now() - started;
    expect(r.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // 200 ms plus scheduling: bounded well below the 2 s answer (373 ms seen on a loaded CI machine).
    expect(elapsed).toBeLessThan(1000);
    // grpc-js turns the grpc-timeout it received into the call's deadline.
    const budget = slow.calls.at(-1)!.budgetMs;
    expect(budget).toBeGreaterThan(100);
    expect(budget).toBeLessThanOrEqual(200);
  });

  it('a call without a deadline reaches the server without one: the request timeout is not sent as grpc-timeout', async () => {
    // Sent upstream, the 15 s request timeout would make a server end a long-lived stream (a watch) then.
    const r = await unary(client('slow'), { message: 'no deadline' });
    expect(r.reply?.message).toBe('no deadline');
    expect(slow.calls.at(-1)!.budgetMs).toBe(Number.POSITIVE_INFINITY);
  });
});
