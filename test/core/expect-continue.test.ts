// An app's `Expect: 100-continue`: meshlet answers the 100 itself, the body follows and is forwarded; an endpoint's early final answer reaches the app and frees the connection.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

/**
 * Sends a head with `Expect: 100-continue`, the body only once a 100 came, then `next` after the
 * final answer (whose body is `finalBody`) on the same connection. Resolves with everything read.
 */
function expectContinue(
  port: number,
  host: string,
  body: Buffer,
  finalBody: string,
  next: string,
  timeoutMs = 5000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    let stage = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete exchange in ${timeoutMs} ms: ${JSON.stringify(text.slice(0, 600))}`));
    }, timeoutMs);
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (stage === 0 && text.includes('\r\n\r\n')) {
        stage = 1;
        expect(text.startsWith('HTTP/1.1 100 Continue\r\n'), text).toBe(true);
        socket.write(body);
      }
      if (stage === 1 && text.split(finalBody).length === 2) {
        stage = 2;
        socket.write(next);
      }
      if (stage === 2 && text.split(finalBody).length === 3) {
        clearTimeout(timer);
        socket.destroy();
        resolve(text);
      }
    });
    socket.write(
      `POST /upload HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
  });
}

/** A raw endpoint that answers each request head at once with a final 401 and closes, without reading any body. */
async function refusingEndpoint(): Promise<{ server: Server; endpoint: string; heads: string[] }> {
  const heads: string[] = [];
  const server = createServer((socket: Socket) => {
    let seen = '';
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      seen += d.toString('latin1');
      if (!seen.includes('\r\n\r\n') || socket.writableEnded) return;
      heads.push(seen.slice(0, seen.indexOf('\r\n\r\n')));
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope');
      socket.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, endpoint: `127.0.0.1:${(server.address() as { port: number }).port}`, heads };
}

describe('Expect: 100-continue from the app', () => {
  let up: TestUpstream;
  let refusing: Awaited<ReturnType<typeof refusingEndpoint>>;
  let mesh: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      let size = 0;
      req.on('data', (d: Buffer) => (size += d.length));
      req.on('end', () => res.end(`got ${size};end`));
    });
    refusing = await refusingEndpoint();
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: [up.endpoint], locked: [refusing.endpoint] } },
      accessLog: { enabled: false },
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh.close();
    await up.close();
    await new Promise((r) => refusing.server.close(r));
  });

  it('the app gets 100, sends its body (small, then past the replay buffer), and the endpoint gets it whole, without Expect', async () => {
    for (const size of [5, 300_000]) {
      const next = 'GET /after HTTP/1.1\r\nHost: users\r\n\r\n';
      const text = await expectContinue(port, 'users', Buffer.alloc(size, 'x'), ';end', next);
      const final = parseReply(text.slice(text.indexOf('\r\n\r\n') + 4));
      expect(final.status).toBe(200);
      expect(final.body.startsWith(`got ${size};end`)).toBe(true);
      expect(text).toContain('got 0;end');
    }
    const uploads = up.requests.filter((r) => r.url === '/upload');
    expect(uploads).toHaveLength(2);
    for (const r of uploads) expect(r.headers.expect).toBeUndefined();
  });

  it("an endpoint's 401 before it read the body reaches the app, and the app's connection serves the next request", async () => {
    const next = 'GET /again HTTP/1.1\r\nHost: locked\r\n\r\n';
    const text = await expectContinue(port, 'locked', Buffer.alloc(2_000_000, 'y'), 'nope', next);
    const answers = text.split('HTTP/1.1 ').slice(1);
    expect(answers.map((a) => a.slice(0, 3))).toEqual(['100', '401', '401']);
    expect(refusing.heads).toHaveLength(2);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_upstream_attempts_total\{upstream="locked",result="response"\} 2$/m);
    expect(metrics).not.toMatch(/^meshlet_upstream_attempts_total\{upstream="locked",result="reset"\}/m);
    expect(metrics).toMatch(/^meshlet_requests_active\{direction="outbound",upstream="locked"\} 0$/m);
  });
});
