// Issue 11: slow and oversized requests are bounded on the outbound and per-upstream listeners (408, 413), others keep being served.
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply } from '../helpers/raw-http.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

const HEADERS_TIMEOUT_MS = 1000;
const BODY_TIMEOUT_MS = 600;
const MAX_BODY = 1000;

/** Opens a socket, writes `first`, and collects the reply; `closedAt` is when the server closed it. */
function openRaw(
  port: number,
  first: string,
): {
  socket: Socket;
  reply: Promise<{ text: string; closedAt: number }>;
} {
  const socket = connect(port, '127.0.0.1');
  const reply = new Promise<{ text: string; closedAt: number }>((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    socket.on('close', () => resolve({ text, closedAt: performance.now() }));
    socket.on('error', () => {});
  });
  socket.write(first);
  return { socket, reply };
}

/** Writes one byte every `everyMs` until the socket closes; returns a stop function. */
function dribble(socket: Socket, everyMs: number): () => void {
  const timer = setInterval(() => {
    if (socket.destroyed || !socket.writable) clearInterval(timer);
    else socket.write('x');
  }, everyMs);
  return () => clearInterval(timer);
}

describe('slow clients and large bodies', () => {
  let up: TestUpstream;
  /** Requests the upstream saw whose body never completed. */
  const aborted: string[] = [];
  let mesh: InProcessMeshlet;
  let outboundPort: number;
  let perUpstreamPort: number;

  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      let size = 0;
      req.on('data', (d: Buffer) => {
        size += d.length;
      });
      req.on('close', () => {
        if (!req.complete) aborted.push(req.url ?? '');
      });
      req.on('end', () => res.end(`got ${size}`));
    });
    mesh = await startMeshlet({
      listeners: {
        outbound: { port: 0, headersTimeout: HEADERS_TIMEOUT_MS, bodyTimeout: BODY_TIMEOUT_MS },
      },
      registry: { type: 'static', endpoints: { users: [up.endpoint] } },
      upstreams: {
        users: {
          port: await closedPort(),
          maxRequestBodyBytes: MAX_BODY,
          retries: { bufferLimitBytes: 100 },
        },
      },
      accessLog: { enabled: false },
    });
    outboundPort = Number(new URL(mesh.outbound).port);
    perUpstreamPort = mesh.daemon.addresses().upstreams.users!.port;
  });
  afterAll(async () => {
    await mesh.close();
    await up.close();
  });

  it('headers dribbled at 1 byte per 100 ms get 408 within headersTimeout + 1 s, on both listeners', async () => {
    const results = await Promise.all(
      [outboundPort, perUpstreamPort].map(async (port) => {
        const startedAt = performance.now();
        const { socket, reply } = openRaw(port, 'GET / HTTP/1.1\r\nHost: users\r\nX-Slow: ');
        const stop = dribble(socket, 100);
        const { text, closedAt } = await reply;
        stop();
        return { reply: parseReply(text), elapsed: closedAt - startedAt };
      }),
    );
    for (const r of results) {
      expect(r.reply.status).toBe(408);
      expect(r.reply.headers['x-meshlet-error']).toBe('request_timeout');
      expect(r.elapsed).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
      expect(r.elapsed).toBeLessThan(HEADERS_TIMEOUT_MS + 1000);
    }
    expect(up.requests).toHaveLength(0);
  });

  it('a body that stalls past bodyTimeout gets 408, its upstream attempt is cancelled, others are served meanwhile', async () => {
    const before = up.requests.length;
    const stalls = [outboundPort, perUpstreamPort].map((port, i) => {
      const startedAt = performance.now();
      // Content-Length 500: over the 100-byte replay buffer, so the body streams to the upstream as it comes.
      const { reply } = openRaw(
        port,
        `POST /stall-${i} HTTP/1.1\r\nHost: users\r\nContent-Length: 500\r\n\r\n${'a'.repeat(150)}`,
      );
      return reply.then(({ text, closedAt }) => ({ reply: parseReply(text), elapsed: closedAt - startedAt }));
    });
    // While both stall, other clients get answers.
    for (let i = 0; i < 5; i++) {
      const res = await request(`${mesh.outbound}/meanwhile`, { headers: { host: 'users' } });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
    for (const r of await Promise.all(stalls)) {
      expect(r.reply.status).toBe(408);
      expect(r.reply.headers['x-meshlet-error']).toBe('request_timeout');
      expect(r.elapsed).toBeGreaterThanOrEqual(BODY_TIMEOUT_MS - 50);
      expect(r.elapsed).toBeLessThan(BODY_TIMEOUT_MS + 1000);
    }
    await new Promise((r) => setTimeout(r, 100));
    // The upstream saw each stalled request once (no retry) and saw it cut off.
    const stalled = up.requests.slice(before).filter((r) => r.url.startsWith('/stall-'));
    expect(stalled.map((r) => r.url).sort()).toEqual(['/stall-0', '/stall-1']);
    expect(aborted.sort()).toEqual(['/stall-0', '/stall-1']);
    // Not the endpoint's fault: no ejection, breaker closed.
    const state = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
      upstreams: Record<string, { circuitBreaker: string; healthy: number }>;
    };
    expect(state.upstreams.users).toMatchObject({ circuitBreaker: 'closed', healthy: 1 });
  });

  it('a body slower than bodyTimeout between chunks but never stalling that long is served', async () => {
    const { socket, reply } = openRaw(
      outboundPort,
      'POST /trickle HTTP/1.1\r\nHost: users\r\nContent-Length: 8\r\nConnection: close\r\n\r\n',
    );
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, BODY_TIMEOUT_MS / 3));
      socket.write('b');
    }
    const parsed = parseReply((await reply).text);
    expect(parsed.status).toBe(200);
    expect(parsed.body).toBe('got 8');
  });

  it('a Content-Length over maxRequestBodyBytes gets 413 before anything is sent', async () => {
    const before = up.requests.length;
    const res = await request(`${mesh.outbound}/big`, {
      method: 'POST',
      headers: { host: 'users' },
      body: 'c'.repeat(MAX_BODY + 1),
    });
    expect(res.statusCode).toBe(413);
    expect(res.headers['x-meshlet-error']).toBe('body_too_large');
    expect(((await res.body.json()) as { error: string }).error).toBe('body_too_large');
    expect(up.requests.length).toBe(before);
  });

  it('a chunked body that outgrows maxRequestBodyBytes gets 413 and is not retried', async () => {
    const before = up.requests.length;
    const beforeAborted = aborted.length;
    // Chunks of 60 bytes: past the 100-byte replay buffer the body streams, then passes 1000 bytes.
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 30; i++) {
        yield Buffer.alloc(60, 'd');
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const res = await request(`${mesh.outbound}/chunked-big`, {
      method: 'PUT',
      headers: { host: 'users' },
      body: Readable.from(chunks()),
    });
    expect(res.statusCode).toBe(413);
    expect(res.headers['x-meshlet-error']).toBe('body_too_large');
    await res.body.dump();
    await new Promise((r) => setTimeout(r, 100));
    // Sent once at most, cut off, never retried.
    const seen = up.requests.slice(before).filter((r) => r.url === '/chunked-big');
    expect(seen.length).toBeLessThanOrEqual(1);
    expect(aborted.length - beforeAborted).toBe(seen.length);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_local_replies_total\{[^}]*code="body_too_large"[^}]*\} 2$/m);
    expect(metrics).not.toMatch(/^meshlet_retries_total\{upstream="users"/m);
  });

  it('a small chunked body over the limit is refused while buffering: the upstream sees nothing', async () => {
    const before = up.requests.length;
    const reply = await new Promise<string>((resolve) => {
      const { socket, reply: r } = openRaw(
        perUpstreamPort,
        'POST /small-chunks HTTP/1.1\r\nHost: users\r\nTransfer-Encoding: chunked\r\n\r\n',
      );
      socket.write(`${(MAX_BODY + 10).toString(16)}\r\n${'e'.repeat(MAX_BODY + 10)}\r\n`);
      void r.then(({ text }) => resolve(text));
    });
    const parsed = parseReply(reply);
    expect(parsed.status).toBe(413);
    expect(up.requests.length).toBe(before);
  });
});
