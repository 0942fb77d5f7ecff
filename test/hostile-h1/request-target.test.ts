// A request target meshlet cannot forward as it came (bytes outside visible ASCII, a #fragment) is refused at the first hop with meshlet's own 400, counted and logged, never sent on.
import { describe, expect, it } from 'vitest';
import { h2Exchange } from '../helpers/h2-request.ts';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { metricValue } from '../helpers/metrics.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort } from '../helpers/upstream-server.ts';

/** One h2c request (prior knowledge) for `users` with `path`; resolves with the response head and body (≤ 5 s). */
const h2c = (port: number, path: string) =>
  h2Exchange(`http://127.0.0.1:${port}`, { ':method': 'GET', ':path': path, ':authority': 'users' });

/** `meshlet_local_replies_total` of requests refused before any upstream was chosen, for `bad_request`. */
const unroutedBadRequests = (admin: string): Promise<number> =>
  metricValue(admin, 'meshlet_local_replies_total', {
    direction: 'outbound',
    upstream: '',
    code: 'bad_request',
  });

describe('request targets refused at the first hop', () => {
  const suite = meshletSuite(async (up) => ({
    registry: { type: 'static', endpoints: { users: [up.endpoint] } },
    upstreams: { users: { port: await closedPort() } },
  }));
  /** The port of the `users` per-upstream listener. */
  const perUpstreamPort = (): number => suite.mesh.daemon.addresses().upstreams.users!.port;

  it('an HTTP/2 path with bytes 0x80-0xFF gets 400 bad_request from meshlet on both listeners, counted, logged, never forwarded', async () => {
    const { up, mesh, port } = suite;
    const before = await unroutedBadRequests(mesh.admin);
    for (const p of [port, perUpstreamPort()]) {
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
    const { up, port } = suite;
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
