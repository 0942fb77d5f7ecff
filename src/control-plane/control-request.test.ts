import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BodyTooLargeError, ControlAgent, request } from './control-request.ts';

const servers: Server[] = [];
const sockets = new Set<Socket>();

async function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterEach(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe('control-plane request (node:http)', () => {
  it('sends method, headers and body; answers status, lower-cased headers and text', async () => {
    let seen = '';
    const base = await serve((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen = `${req.method} ${req.url} ${req.headers['x-consul-token']} ${req.headers['content-length']} ${body}`;
        res.writeHead(201, { 'X-Consul-Index': '42' });
        res.end('done');
      });
    });
    const res = await request(`${base}/v1/agent/service/register?replace-existing-checks=true`, {
      method: 'PUT',
      headers: { 'x-consul-token': 't0k' },
      body: '{"Name":"web"}',
    });
    expect(res.statusCode).toBe(201);
    expect(res.headers['x-consul-index']).toBe('42');
    expect(await res.body.text()).toBe('done');
    expect(seen).toBe('PUT /v1/agent/service/register?replace-existing-checks=true t0k 14 {"Name":"web"}');
  });

  it('reuses one keep-alive connection per agent', async () => {
    const ports = new Set<number>();
    const base = await serve((req, res) => {
      ports.add(req.socket.remotePort!);
      res.end('ok');
    });
    const agent = new ControlAgent();
    for (let i = 0; i < 3; i++) await (await request(base, { dispatcher: agent })).body.text();
    expect(ports.size).toBe(1);
    await agent.close();
  });

  it('reset: a fresh connection each time', async () => {
    const ports = new Set<number>();
    const base = await serve((req, res) => {
      ports.add(req.socket.remotePort!);
      res.end('ok');
    });
    for (let i = 0; i < 3; i++) await (await request(base, { reset: true })).body.text();
    expect(ports.size).toBe(3);
  });

  it('rejects with the signal’s reason: AbortSignal.timeout gives a TimeoutError', async () => {
    const base = await serve(() => undefined); // never answers
    const err = (await request(base, { signal: AbortSignal.timeout(100) }).catch((e: unknown) => e)) as Error;
    expect(err.name).toBe('TimeoutError');
  });

  it('headersTimeout: no response headers in time → TimeoutError', async () => {
    const base = await serve(() => undefined);
    const err = (await request(base, { headersTimeout: 100 }).catch((e: unknown) => e)) as Error;
    expect(err.name).toBe('TimeoutError');
    expect(err.message).toMatch(/no response headers within 100 ms/);
  });

  it('bodyTimeout: a body that stalls rejects text()', async () => {
    const base = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '10' });
      res.write('abc');
    });
    const res = await request(base, { bodyTimeout: 100 });
    const err = (await res.body.text().catch((e: unknown) => e)) as Error;
    expect(err.name).toBe('TimeoutError');
  });

  it('maxBodyBytes: a larger Content-Length, or a chunked body that outgrows it, rejects text()', async () => {
    const base = await serve((req, res) => {
      if (req.url === '/declared') res.end('x'.repeat(2048));
      else {
        // Chunked, and endless: the cap must cut it, not wait for an end.
        res.writeHead(200);
        const timer = setInterval(() => res.write('y'.repeat(512)), 1);
        res.on('close', () => clearInterval(timer));
      }
    });
    for (const path of ['/declared', '/endless']) {
      const res = await request(`${base}${path}`, { maxBodyBytes: 1024 });
      const err = (await res.body.text().catch((e: unknown) => e)) as Error;
      expect(err, path).toBeInstanceOf(BodyTooLargeError);
      expect(err.message).toContain('over the 1024-byte cap');
    }
    const small = await request(`${base}/declared`, { maxBodyBytes: 4096 });
    expect(await small.body.text()).toHaveLength(2048);
  });

  it('a closed port rejects with ECONNREFUSED', async () => {
    const base = await serve(() => undefined);
    await new Promise((r) => servers.pop()!.close(r));
    const err = (await request(base).catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(err.code).toBe('ECONNREFUSED');
  });

  it('an unreachable address fails within the connect timeout', async () => {
    // 192.0.2.0/24 is TEST-NET-1: never routed; with loopback only the connect fails or hangs.
    const agent = new ControlAgent({ connectTimeoutMs: 200 });
    const started = Date.now();
    const err = (await request('http://192.0.2.1:8500/', { dispatcher: agent }).catch(
      (e: unknown) => e,
    )) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
