// A request target meshlet cannot forward as it came (bytes outside visible ASCII, a #fragment) is refused at the first hop with meshlet's own 400, counted and logged, never sent on.
import { connect as h2connect, type IncomingHttpHeaders } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

/** One h2c request (prior knowledge) with `path`; resolves with the response head and body (≤ 5 s). */
function h2c(port: number, path: string): Promise<{ head: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const session = h2connect(`http://127.0.0.1:${port}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error('no HTTP/2 answer within 5 s'));
    }, 5000);
    session.on('error', reject);
    const stream = session.request({ ':method': 'GET', ':path': path, ':authority': 'users' });
    let body = '';
    stream.on('response', (head) => {
      stream.on('data', (d: Buffer) => (body += d.toString()));
      stream.on('end', () => {
        clearTimeout(timer);
        session.close();
        resolve({ head, body });
      });
    });
    stream.on('error', (err) => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    });
    stream.end();
  });
}

/** `meshlet_local_replies_total` of requests refused before any upstream was chosen, for `bad_request`. */
async function unroutedBadRequests(admin: string): Promise<number> {
  const metrics = await (await request(`${admin}/metrics`)).body.text();
  const line =
    /^meshlet_local_replies_total\{direction="outbound",upstream="",code="bad_request"\} (\d+)$/m.exec(
      metrics,
    );
  return Number(line?.[1] ?? 0);
}

describe('request targets refused at the first hop', () => {
  let up: TestUpstream;
  let mesh: InProcessMeshlet;
  let port: number;
  let perUpstreamPort: number;

  beforeAll(async () => {
    up = await startUpstream();
    mesh = await startMeshlet({
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

  it('an HTTP/2 path with bytes 0x80-0xFF gets 400 bad_request from meshlet on both listeners, counted, logged, never forwarded', async () => {
    const before = await unroutedBadRequests(mesh.admin);
    for (const p of [port, perUpstreamPort]) {
      const { head, body } = await h2c(p, '/caf\xe9');
      expect(head[':status']).toBe(400);
      expect(head['x-meshlet-error']).toBe('bad_request');
      // meshlet's own answer, not an endpoint's: no attempt was made.
      expect(head['x-meshlet-attempts']).toBeUndefined();
      expect(JSON.parse(body).message).toMatch(/byte 0xE9 at offset 4/);
    }
    expect((await unroutedBadRequests(mesh.admin)) - before).toBe(2);
    const lines = mesh.logs.filter(
      (l) => l.msg === 'access' && l.error === 'bad_request' && l.method === 'GET',
    );
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.at(-1)).toMatchObject({ direction: 'outbound', status: 400 });
    expect(up.requests).toHaveLength(0);
  });

  it('a #fragment in the target gets 400 over HTTP/1.1 and HTTP/2; a plain target still passes', async () => {
    const h1 = parseReply(
      await rawRequest(port, 'GET /a#/../admin HTTP/1.1\r\nHost: users\r\nConnection: close\r\n\r\n'),
    );
    expect(h1.status).toBe(400);
    expect(h1.headers['x-meshlet-error']).toBe('bad_request');
    expect(JSON.parse(h1.body).message).toMatch(/fragment/);
    const h2 = await h2c(port, '/a#frag');
    expect(h2.head[':status']).toBe(400);
    expect(up.requests).toHaveLength(0);
    const ok = await h2c(port, '/a/b?q=%C3%A9');
    expect(ok.head[':status']).toBe(200);
    expect(up.requests.map((r) => r.url)).toEqual(['/a/b?q=%C3%A9']);
  });
});
