// Hostile calls to the admin listener: 405 with Allow, absolute-form targets, bodies no call reads, bearer scheme case, secrets in URLs and header matchers.
import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redact, REDACTED } from '../../src/admin/config-view.ts';
import { validateConfig } from '../../src/config/load-config.ts';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

/** Writes `head` (and then `more` every 10 ms while the socket is open) and collects what comes back. */
function rawExchange(
  port: number,
  head: string,
  more?: string,
): Promise<{ reply: () => string; closed: Promise<boolean>; destroy: () => void }> {
  return new Promise((resolve, reject) => {
    let reply = '';
    const socket = connect(port, '127.0.0.1');
    let timer: NodeJS.Timeout | undefined;
    const closed = new Promise<boolean>((done) => {
      socket.once('close', () => {
        clearInterval(timer);
        done(true);
      });
    });
    socket.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      socket.write(head);
      if (more !== undefined) timer = setInterval(() => socket.writable && socket.write(more), 10);
      resolve({
        reply: () => reply,
        closed,
        destroy: () => {
          clearInterval(timer);
          socket.destroy();
        },
      });
    });
    socket.once('error', reject);
  });
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

describe('admin listener under hostile calls', () => {
  let app: TestUpstream;
  let mesh: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    app = await startUpstream();
    mesh = await startMeshlet({
      listeners: { adminGrpc: { enabled: false } },
      registry: { type: 'static', endpoints: { users: [app.endpoint] } },
      accessLog: { enabled: false },
    });
    port = Number(new URL(mesh.admin).port);
  });
  afterAll(async () => {
    await mesh.close();
    await app.close();
  });

  it('a wrong method gets 405 with the Allow header RFC 9110 requires, listing what the path answers', async () => {
    const cases: [string, string, string][] = [
      ['/live', 'PUT', 'GET, HEAD'],
      ['/metrics', 'POST', 'GET, HEAD'],
      ['/config', 'DELETE', 'GET, HEAD'],
      ['/drain', 'GET', 'POST, DELETE'],
      ['/upstreams/users/breaker/reset', 'GET', 'POST'],
    ];
    for (const [path, method, allow] of cases) {
      const res = await request(`${mesh.admin}${path}`, { method: method as 'GET' });
      const body = (await res.body.json()) as { error: string };
      expect([path, res.statusCode, res.headers.allow]).toEqual([path, 405, allow]);
      expect(body.error).toBe('method_not_allowed');
    }
  });

  it('an absolute-form target (GET http://host/live, RFC 9112 §3.2.2) is answered like its path', async () => {
    const x = await rawExchange(
      port,
      `GET http://127.0.0.1:${port}/ready?ignore=app HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
    );
    await x.closed;
    expect(x.reply()).toMatch(/^HTTP\/1\.1 200 /);
    expect(x.reply()).toContain('"status": "ready"');
  });

  it('an absolute-form POST naming another host is refused (its authority is checked like Host), one naming this listener is not', async () => {
    const post = async (authority: string) => {
      const x = await rawExchange(
        port,
        `POST http://${authority}/upstreams/users/breaker/reset HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
      );
      await x.closed;
      return x.reply().split('\r\n')[0];
    };
    expect(await post(`evil.example:${port}`)).toBe('HTTP/1.1 403 Forbidden');
    expect(await post(`127.0.0.1:${port}`)).toBe('HTTP/1.1 200 OK');
  });

  it('a POST whose chunked body never ends gets its answer, then the connection is closed (not read forever)', async () => {
    const x = await rawExchange(
      port,
      `POST /upstreams/users/breaker/reset HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nTransfer-Encoding: chunked\r\n\r\n`,
      '5\r\nhello\r\n',
    );
    try {
      expect(await until(() => x.reply().includes('"circuitBreaker"'), 2000)).toBe(true);
      expect(x.reply()).toMatch(/^HTTP\/1\.1 200 /);
      expect(x.reply().toLowerCase()).toContain('connection: close');
      const closed = await Promise.race([x.closed, new Promise((r) => setTimeout(() => r(false), 2000))]);
      expect(closed).toBe(true);
    } finally {
      x.destroy();
    }
  });

  it('a body announced by Content-Length (100 MB, never sent) gets its answer and a closed connection too', async () => {
    const x = await rawExchange(
      port,
      `POST /upstreams/users/breaker/reset HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: 100000000\r\n\r\n`,
    );
    try {
      const closed = await Promise.race([x.closed, new Promise((r) => setTimeout(() => r(false), 2000))]);
      expect(closed).toBe(true);
      expect(x.reply()).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      x.destroy();
    }
  });

  it('a GET without a body keeps its keep-alive connection (the close is for bodies only)', async () => {
    const x = await rawExchange(
      port,
      `GET /live HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\nGET /live HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`,
    );
    try {
      expect(await until(() => (x.reply().match(/HTTP\/1\.1 200 /g) ?? []).length === 2, 2000)).toBe(true);
      expect(x.reply().toLowerCase()).not.toContain('connection: close');
    } finally {
      x.destroy();
    }
  });
});

describe('admin token: the Bearer scheme in any case, the token never echoed', () => {
  const TOKEN = 'Op3rator-Token-xyz';
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    mesh = await startMeshlet({
      listeners: { admin: { port: 0, token: TOKEN }, adminGrpc: { enabled: false } },
      registry: { type: 'static', endpoints: { users: ['127.0.0.1:9'] } },
      accessLog: { enabled: false },
    });
  });
  afterAll(() => mesh.close());

  const reset = async (authorization?: string) => {
    const res = await request(`${mesh.admin}/upstreams/users/breaker/reset`, {
      method: 'POST',
      headers: authorization === undefined ? {} : { authorization },
    });
    return { status: res.statusCode, text: await res.body.text() };
  };

  it('accepts "bearer TOKEN" and "BEARER  TOKEN" (RFC 9110 §11.1: the scheme is case-insensitive)', async () => {
    expect((await reset(`Bearer ${TOKEN}`)).status).toBe(200);
    expect((await reset(`bearer ${TOKEN}`)).status).toBe(200);
    expect((await reset(`BEARER  ${TOKEN}`)).status).toBe(200);
  });

  it('refuses a wrong, missing, differently cased or prefixed token, and no answer holds the token', async () => {
    for (const authorization of [
      undefined,
      'Bearer wrong',
      `Bearer ${TOKEN.toLowerCase()}`,
      `Bearer ${TOKEN}x`,
      `Basic ${TOKEN}`,
      TOKEN,
      'Bearer',
    ]) {
      const { status, text } = await reset(authorization);
      expect([authorization, status]).toEqual([authorization, 403]);
      expect(text).not.toContain(TOKEN);
    }
  });
});

describe('GET /config and /upstreams hide passwords in URLs and credential header values', () => {
  it('a Consul address with user:password@ shows neither in /config nor in /upstreams; an authorization matcher value is hidden', async () => {
    const double = new ConsulDouble();
    await double.start();
    const address = double.url.replace('http://', 'http://ops:Consul-PASS-1@');
    const mesh = await startMeshlet({
      listeners: { adminGrpc: { enabled: false } },
      registry: { type: 'consul', consul: { address } },
      routes: [
        {
          match: { pathPrefix: '/', headers: [{ name: 'Authorization', exact: 'Bearer Route-PASS-2' }] },
          upstream: 'users',
        },
      ],
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    try {
      const config = await (await request(`${mesh.admin}/config`)).body.text();
      expect(config).not.toMatch(/PASS/);
      const doc = JSON.parse(config) as {
        redacted: string[];
        config: { registry: { consul: { address: string } } };
      };
      expect(doc.config.registry.consul.address).toBe(
        double.url.replace('http://', `http://ops:${REDACTED}@`),
      );
      expect(doc.redacted).toEqual(['registry.consul.address', 'routes[0].match.headers[0].exact']);
      const upstreams = await (await request(`${mesh.admin}/upstreams`)).body.text();
      expect(upstreams).not.toMatch(/PASS/);
    } finally {
      await mesh.close();
      await double.stop();
    }
  });

  it('redacts the password of etcd hosts and a Redis url, keeps plain URLs, and leaves booleans named like secrets', () => {
    const paths: string[] = [];
    const etcd = validateConfig({
      registry: {
        type: 'etcd',
        etcd: { hosts: ['http://root:Etcd-PASS-3@127.0.0.1:2379', 'http://127.0.0.1:2380'] },
      },
    });
    const redis = validateConfig({
      registry: { type: 'redis', redis: { url: 'redis://bob:Redis-PASS-4@127.0.0.1:6379/0' } },
    });
    const out = JSON.stringify([redact(etcd, '', paths), redact(redis, '', paths)]);
    expect(out).not.toMatch(/PASS/);
    expect(out).toContain('http://127.0.0.1:2380');
    expect(out).toContain(`redis://bob:${REDACTED}@127.0.0.1:6379/0`);
    expect(paths).toEqual(['registry.etcd.hosts[0]', 'registry.redis.url']);
    // CORS `credentials: true` is a switch, not a secret.
    expect(redact({ cors: { credentials: true }, password: 'x' })).toEqual({
      cors: { credentials: true },
      password: REDACTED,
    });
  });
});
