// Requests the outbound and per-upstream listeners answer before any handler (slow or malformed heads, CONNECT) are counted and logged like every refusal of meshlet's.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

const HEADERS_TIMEOUT_MS = 600;

/** Dribbles a request head one byte per 50 ms (it would take ~3 s); resolves with what came back once meshlet closed. */
function slowloris(port: number): Promise<string> {
  const head = `GET /slow HTTP/1.1\r\nHost: users\r\nX-Padding: ${'p'.repeat(40)}\r\n\r\n`;
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    let at = 0;
    const timer = setInterval(() => {
      if (at < head.length && socket.writable) socket.write(head[at++]!);
    }, 50);
    const giveUp = setTimeout(() => socket.destroy(), 5000);
    socket.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      clearTimeout(giveUp);
      resolve(reply);
    });
  });
}

/** `meshlet_local_replies_total` for requests no upstream was chosen for, by code. */
function unroutedReplies(metrics: string, code: string): number {
  const line = new RegExp(
    `^meshlet_local_replies_total\\{direction="outbound",upstream="",code="${code}"\\} (\\d+)$`,
    'm',
  );
  return Number(line.exec(metrics)?.[1] ?? 0);
}

describe('refusals answered by the listener itself', () => {
  let up: TestUpstream;
  let mesh: InProcessMeshlet;
  let port: number;
  let perUpstreamPort: number;

  beforeAll(async () => {
    up = await startUpstream();
    mesh = await startMeshlet({
      listeners: { outbound: { port: 0, headersTimeout: HEADERS_TIMEOUT_MS } },
      registry: { type: 'static', endpoints: { users: [up.endpoint] } },
      upstreams: { users: { port: await closedPort() } },
    });
    port = Number(new URL(mesh.outbound).port);
    perUpstreamPort = mesh.daemon.addresses().upstreams.users!.port;
  });
  afterAll(async () => {
    await mesh.close();
    await up.close();
  });

  it('a slowloris head gets 408 within headersTimeout + 1 s on both listeners, counted as request_timeout and logged', async () => {
    const startedAt = performance.now();
    const replies = await Promise.all([port, perUpstreamPort].map(slowloris));
    expect(performance.now() - startedAt).toBeLessThan(HEADERS_TIMEOUT_MS + 1000);
    for (const raw of replies) {
      expect(parseReply(raw).status).toBe(408);
      expect(parseReply(raw).headers['x-meshlet-error']).toBe('request_timeout');
    }
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(unroutedReplies(metrics, 'request_timeout')).toBe(2);
    expect(metrics).toMatch(
      /^meshlet_requests_total\{direction="outbound",upstream="",status_class="4xx"\} 2$/m,
    );
    const lines = mesh.logs.filter((l) => l.msg === 'access' && l.error === 'request_timeout');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ direction: 'outbound', status: 408 });
    // Nothing reached the endpoint, nothing counted against it.
    expect(up.requests).toHaveLength(0);
    expect(metrics).not.toMatch(/^meshlet_upstream_attempts_total\{upstream="users"/m);
  });

  it('a malformed head (400) and CONNECT on a per-upstream listener (405) are counted by their codes', async () => {
    const before = await (await request(`${mesh.admin}/metrics`)).body.text();
    const bad = await rawRequest(port, 'GET / HTTP/1.1\r\nHost users\r\n\r\n');
    expect(parseReply(bad).status).toBe(400);
    const tunnel = await rawRequest(perUpstreamPort, 'CONNECT users:443 HTTP/1.1\r\nHost: users:443\r\n\r\n');
    expect(parseReply(tunnel).status).toBe(405);
    const after = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(unroutedReplies(after, 'bad_request') - unroutedReplies(before, 'bad_request')).toBe(1);
    expect(unroutedReplies(after, 'method_not_allowed') - unroutedReplies(before, 'method_not_allowed')).toBe(
      1,
    );
    expect(mesh.logs.filter((l) => l.msg === 'access' && l.method === 'CONNECT')).toHaveLength(1);
    expect(up.requests).toHaveLength(0);
  });
});
