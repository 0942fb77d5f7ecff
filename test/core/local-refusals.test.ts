// Issue 11: a request meshlet's own HTTP client would refuse gets 400 before any attempt, and never hurts other traffic; nor does a client that breaks its own upload.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startMeshlet, type InProcessMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, startInbound, type TestInbound, type TestPki } from '../tls/tls-helpers.ts';

const TWO_HOSTS = 'GET /v1/x HTTP/1.1\r\nHost: users\r\nHost: users\r\n\r\n';

/**
 * Checks that `users` is unharmed (a GET gets 200, the breaker is closed, its one endpoint healthy,
 * nothing ejected) and returns the metrics text for more checks.
 */
async function expectUsersUnharmed(mesh: InProcessMeshlet): Promise<string> {
  const ok = await request(`${mesh.outbound}/v1/ok`, { headers: { host: 'users' } });
  expect(ok.statusCode).toBe(200);
  await ok.body.dump();
  const state = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
    upstreams: Record<string, { circuitBreaker: string; healthy: number; total: number }>;
  };
  expect(state.upstreams.users).toMatchObject({ circuitBreaker: 'closed', healthy: 1, total: 1 });
  const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
  expect(metrics).not.toMatch(/^meshlet_outlier_ejections_total\{upstream="users"[^}]*\} [1-9]/m);
  return metrics;
}

describe('requests the forwarding client would refuse (outbound and per-upstream listeners)', () => {
  let up: TestUpstream;
  let mesh: InProcessMeshlet;
  let perUpstreamPort: number;

  beforeAll(async () => {
    up = await startUpstream();
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: [up.endpoint] } },
      // Default breaker (opens after 20 failures) and ejection (after 5): 50 refusals must trip neither.
      upstreams: { users: { port: await closedPort() } },
    });
    perUpstreamPort = mesh.daemon.addresses().upstreams.users?.port ?? 0;
  });
  afterAll(async () => {
    await mesh.close();
    await up.close();
  });

  it('a repeated Host header gets 400 bad_request with no attempt, on both listeners', async () => {
    const port = Number(new URL(mesh.outbound).port);
    for (const p of [port, perUpstreamPort]) {
      const reply = parseReply(await rawRequest(p, TWO_HOSTS));
      expect(reply.status).toBe(400);
      expect(reply.headers['x-meshlet-error']).toBe('bad_request');
      expect(reply.headers.connection).toBe('close');
      expect(JSON.parse(reply.body)).toMatchObject({ error: 'bad_request', upstream: 'users' });
      expect(reply.body).toContain('more than one Host header');
      expect(reply.headers['x-meshlet-attempts']).toBe('0');
    }
    expect(up.requests).toHaveLength(0);
  });

  it('after 50 such requests a valid request gets 200: breaker closed, no endpoint ejected, no retry', async () => {
    const port = Number(new URL(mesh.outbound).port);
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => rawRequest(i % 2 === 0 ? port : perUpstreamPort, TWO_HOSTS)),
    );
    for (const r of replies) expect(parseReply(r).status).toBe(400);
    expect(up.requests).toHaveLength(0);

    const metrics = await expectUsersUnharmed(mesh);
    expect(metrics).not.toMatch(/^meshlet_retries_total\{[^}]*upstream="users"/m);
    expect(metrics).toMatch(/^meshlet_local_replies_total\{[^}]*code="bad_request"[^}]*\} 52$/m);
  });

  it('CONNECT on a per-upstream listener gets 405 method_not_allowed with a JSON body, not a closed socket', async () => {
    // (The outbound listener opens CONNECT tunnels: test/tunnel/connect.test.ts.)
    for (const p of [perUpstreamPort]) {
      const reply = parseReply(await rawRequest(p, 'CONNECT users:443 HTTP/1.1\r\nHost: users:443\r\n\r\n'));
      expect(reply.status).toBe(405);
      expect(reply.headers['x-meshlet-error']).toBe('method_not_allowed');
      expect(JSON.parse(reply.body)).toMatchObject({ error: 'method_not_allowed' });
    }
  });
});

describe('requests the forwarding client would refuse (inbound mTLS listener)', () => {
  let pki: TestPki;
  let app: TestUpstream;
  let inbound: TestInbound;

  beforeAll(async () => {
    pki = await makePki();
    app = await startUpstream();
    inbound = await startInbound(pki, { service: 'orders', appPort: app.port, allow: ['web'] });
  });
  afterAll(async () => {
    await inbound?.close();
    await app?.close();
  });

  it('a repeated Host header from a peer gets 400 bad_request; the local app sees nothing', async () => {
    const web = await pki.issue('web');
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: inbound.port,
        ca: pki.ca.certPem,
        cert: web.certPem,
        key: web.keyPem,
        checkServerIdentity: () => undefined,
      });
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
      });
      socket.on('end', () => resolve(text));
      socket.on('error', (err) => (text === '' ? reject(err) : resolve(text)));
      socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: orders\r\nHost: evil\r\n\r\n'));
    });
    const parsed = parseReply(reply);
    expect(parsed.status).toBe(400);
    expect(parsed.headers['x-meshlet-error']).toBe('bad_request');
    expect(app.requests).toHaveLength(0);
  });
});

describe('a client that breaks its own streamed upload', () => {
  /** Sends the head of a 1 MiB POST and 100 KB of its body (over the 64 KiB replay buffer: streamed), then `end`s. */
  const brokenUpload = (port: number, end: (s: Socket) => void): Promise<void> =>
    new Promise((resolve) => {
      const s = netConnect(port, '127.0.0.1', () => {
        s.write('POST /upload HTTP/1.1\r\nHost: users\r\nContent-Length: 1048576\r\n\r\n');
        s.write(Buffer.alloc(100_000, 97), () => setTimeout(() => end(s), 20));
      });
      s.on('error', () => {});
      // A half-closed client is answered 400 (its body ended short) and then done.
      s.on('end', () => s.destroy());
      s.resume();
      s.on('close', () => resolve());
    });

  it('counts against nothing: 25 aborted or half-closed uploads leave the endpoint healthy and the breaker closed', async () => {
    // The upstream reads uploads and never answers them (the client leaves first); GETs get 200.
    const up = await startUpstream((req, res) => {
      if (req.method === 'GET') res.end('ok');
      else req.resume();
    });
    const mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: [up.endpoint] } },
      // Eject after 5 gateway failures, open the breaker after 20: 25 client faults must trip neither.
      upstreams: { users: { circuitBreaker: { volumeThreshold: 20 } } },
      accessLog: { enabled: false },
    });
    try {
      const port = Number(new URL(mesh.outbound).port);
      for (let i = 0; i < 25; i++) await brokenUpload(port, (s) => (i % 2 === 0 ? s.destroy() : s.end()));
      await new Promise((r) => setTimeout(r, 100));
      const metrics = await expectUsersUnharmed(mesh);
      expect(metrics).not.toMatch(
        /^meshlet_upstream_attempts_total\{upstream="users",result="reset"\} [1-9]/m,
      );
      expect(metrics).toMatch(
        /^meshlet_requests_total\{direction="outbound",upstream="users",status_class="4xx"\} 25$/m,
      );
    } finally {
      await mesh.close();
      await up.close();
    }
  });
});
