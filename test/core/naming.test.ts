// The four ways an app names its destination, and the errors for names and endpoints that do not work.

import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('naming the destination', () => {
  let users: TestUpstream;
  let orders: TestUpstream;
  let slow: TestUpstream;
  let mesh: InProcessMeshlet;
  let perUpstreamPort: number;

  beforeAll(async () => {
    users = await startUpstream();
    orders = await startUpstream();
    slow = await startUpstream((_req, res) => {
      setTimeout(() => res.end('late'), 2000).unref();
    });
    perUpstreamPort = await closedPort();
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          users: [users.endpoint],
          orders: [orders.endpoint],
          dead: [`127.0.0.1:${await closedPort()}`],
          slow: [slow.endpoint],
        },
      },
      upstreams: {
        empty: {},
        orders: { port: perUpstreamPort },
        slow: { timeouts: { request: '300ms' } },
      },
      routes: [{ match: { pathPrefix: '/orders-api/' }, upstream: 'orders', stripPrefix: true }],
    });
  });
  afterAll(async () => {
    await mesh.close();
    await Promise.all([users.close(), orders.close(), slow.close()]);
  });

  it('Host header names the upstream, with Consul DNS forms', async () => {
    for (const host of ['users', 'users.service.consul', 'users.service', 'USERS:8080']) {
      const res = await request(`${mesh.outbound}/v1/42?x=1`, { headers: { host } });
      expect(res.statusCode).toBe(200);
      const body = (await res.body.json()) as { port: number; url: string };
      expect(body.port).toBe(users.port);
      expect(body.url).toBe('/v1/42?x=1');
    }
  });

  it('forward-proxy absolute form (HTTP_PROXY) names the upstream', async () => {
    const port = mesh.daemon.addresses().outbound.port;
    const reply = parseReply(
      await rawRequest(
        port,
        'GET http://orders/v1/7?q=2 HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(200);
    const body = JSON.parse(reply.body) as { port: number; url: string };
    expect(body.port).toBe(orders.port);
    expect(body.url).toBe('/v1/7?q=2');
  });

  it("absolute form: the endpoint gets the URL's authority as Host, not a Host that names something else", async () => {
    const port = mesh.daemon.addresses().outbound.port;
    for (const [target, host, want] of [
      ['http://orders:8080/v1/7', 'Host: elsewhere\r\n', 'orders:8080'],
      ['http://user@orders/v1/7', 'Host: a\r\nHost: b\r\n', 'orders'],
    ] as const) {
      const reply = parseReply(
        await rawRequest(port, `GET ${target} HTTP/1.1\r\n${host}Connection: close\r\n\r\n`),
      );
      expect(reply.status).toBe(200);
      const body = JSON.parse(reply.body) as { port: number; headers: Record<string, string> };
      expect(body.port).toBe(orders.port);
      expect(body.headers.host).toBe(want);
    }
    // HTTP/1.0 may send no Host at all: the target's authority is added.
    const reply = parseReply(await rawRequest(port, 'GET http://orders/v1/8 HTTP/1.0\r\n\r\n'));
    expect(reply.status).toBe(200);
    expect((JSON.parse(reply.body) as { headers: Record<string, string> }).headers.host).toBe('orders');
  });

  it('a path-prefix route sends to its upstream with the prefix stripped', async () => {
    const res = await request(`${mesh.outbound}/orders-api/v1/9`);
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as { port: number; url: string };
    expect(body.port).toBe(orders.port);
    expect(body.url).toBe('/v1/9');
  });

  it('a per-upstream listener sends everything to its upstream', async () => {
    expect(mesh.daemon.addresses().upstreams.orders?.port).toBe(perUpstreamPort);
    const res = await request(`http://127.0.0.1:${perUpstreamPort}/anything`, { headers: { host: 'users' } });
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as { port: number; url: string };
    expect(body.port).toBe(orders.port);
    expect(body.url).toBe('/anything');
  });

  it('an unknown service → 404 no_route', async () => {
    const res = await request(`${mesh.outbound}/`, { headers: { host: 'nobody' } });
    expect(res.statusCode).toBe(404);
    expect(res.headers['x-meshlet-error']).toBe('no_route');
    expect(await res.body.json()).toEqual({
      error: 'no_route',
      message: 'no route or upstream matches "nobody"',
      upstream: 'nobody',
    });
  });

  it('an upstream with no endpoints → 503 no_healthy_endpoints', async () => {
    const res = await request(`${mesh.outbound}/`, { headers: { host: 'empty' } });
    expect(res.statusCode).toBe(503);
    expect(res.headers['x-meshlet-error']).toBe('no_healthy_endpoints');
    expect(((await res.body.json()) as { upstream: string }).upstream).toBe('empty');
  });

  it('a refused connection → 502 upstream_unreachable', async () => {
    const res = await request(`${mesh.outbound}/`, { headers: { host: 'dead' } });
    expect(res.statusCode).toBe(502);
    expect(res.headers['x-meshlet-error']).toBe('upstream_unreachable');
    const body = (await res.body.json()) as { message: string };
    expect(body.message).toMatch(/connect failed \(ECONNREFUSED\)/);
  });

  it('a slow upstream past its timeout → 504 upstream_timeout', async () => {
    const started = performance.now();
    const res = await request(`${mesh.outbound}/`, { headers: { host: 'slow' } });
    expect(res.statusCode).toBe(504);
    expect(res.headers['x-meshlet-error']).toBe('upstream_timeout');
    await res.body.dump();
    expect(performance.now() - started).toBeLessThan(1500);
  });

  it('a malformed request target → 400 bad_request', async () => {
    const port = mesh.daemon.addresses().outbound.port;
    const reply = parseReply(
      await rawRequest(port, 'GET http:///nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    );
    expect(reply.status).toBe(400);
    expect(reply.headers['x-meshlet-error']).toBe('bad_request');
  });
});
