// The gateway's edge behaviour: CORS preflights, smuggling and oversized input, per-IP limits behind trusted proxies, TLS termination with a reloaded certificate, route reloads, and idle HTTP/2 sessions.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as http2 from 'node:http2';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { validateConfig } from '../../src/config/load-config.ts';
import { createDevCa, issueLeaf } from '../../src/tls/dev-ca.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl } from './fixtures.ts';

describe('gateway edge', () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let gw: string;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0, maxHeaderSize: 4096 } },
      registry: { endpoints: { web: [upstream.endpoint] } },
      gateway: {
        trustedProxies: 1,
        maxRequestBodyBytes: 1024,
        routes: [
          {
            match: { pathPrefix: '/app/', methods: ['GET', 'POST'] },
            upstream: 'web',
            cors: {
              origins: ['https://app.example'],
              methods: ['GET', 'POST'],
              credentials: true,
              maxAge: 600,
            },
          },
          {
            match: { pathPrefix: '/limited/' },
            upstream: 'web',
            rateLimit: { perSecond: 1, burst: 2, by: 'ip' },
          },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
    port = m.daemon.addresses().gateway!.port;
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  it('CORS preflight from an allowed origin → 204 with the right headers, answered at the edge', async () => {
    const before = upstream.requests.length;
    const headers = {
      origin: 'https://app.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type, authorization',
    };
    const res = await call(gw, '/app/x', headers, 'OPTIONS');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(res.headers['access-control-allow-methods']).toBe('GET, POST');
    expect(res.headers['access-control-allow-headers']).toBe('content-type, authorization');
    expect(res.headers['access-control-allow-credentials']).toBe('true');
    expect(res.headers['access-control-max-age']).toBe('600');
    expect(upstream.requests.length).toBe(before);
    const actual = await call(gw, '/app/x', { origin: 'https://app.example' });
    expect(actual.status).toBe(200);
    expect(actual.headers['access-control-allow-origin']).toBe('https://app.example');
  });

  it('CORS preflight from another origin → no CORS headers', async () => {
    const res = await call(
      gw,
      '/app/x',
      { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
      'OPTIONS',
    );
    expect(res.status).toBe(204);
    for (const name of Object.keys(res.headers)) expect(name.startsWith('access-control-')).toBe(false);
    const actual = await call(gw, '/app/x', { origin: 'https://evil.example' });
    expect(actual.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('smuggling (Content-Length with Transfer-Encoding) → 400, an oversized body → 413, oversized headers → 400; nothing reaches the upstream', async () => {
    const before = upstream.requests.length;
    const smuggle = parseReply(
      await rawRequest(
        port,
        'POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /app/y HTTP/1.1\r\nHost: a\r\n\r\n',
      ),
    );
    expect(smuggle.status).toBe(400);
    const big = 'x'.repeat(2048);
    const tooLarge = parseReply(
      await rawRequest(
        port,
        `POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: ${big.length}\r\n\r\n${big}`,
      ),
    );
    expect(tooLarge.status).toBe(413);
    expect(JSON.parse(tooLarge.body).error).toBe('body_too_large');
    const chunked = parseReply(
      await rawRequest(
        port,
        `POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`,
      ),
    );
    expect(chunked.status).toBe(413);
    const headers = parseReply(
      await rawRequest(port, `GET /app/x HTTP/1.1\r\nHost: a\r\nX-Big: ${'y'.repeat(5000)}\r\n\r\n`),
    );
    expect(headers.status).toBe(400);
    const encoded = await call(gw, '/app/..%2Fadmin');
    expect(encoded.status).toBe(400);
    const dotted = await call(gw, '/app/../limited/x');
    expect(dotted.status).toBe(200); // normalised to /limited/x, whose own route applies
    expect(upstream.requests.length).toBe(before + 1);
    expect((await call(gw, '/other')).status).toBe(404);
    expect((await call(gw, '/app/x', {}, 'DELETE')).status).toBe(405);
  });

  it('maxHeaderSize holds over HTTP/2 too: a 5 KB header gets 400 bad_request over h2c, nothing reaches the upstream', async () => {
    const before = upstream.requests.length;
    const session = http2.connect(gw);
    session.on('error', () => {});
    const get = (size: number) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = session.request({ ':path': '/app/x', 'x-big': 'y'.repeat(size) });
        let status = 0;
        let body = '';
        req.setEncoding('utf8');
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('data', (d: string) => (body += d));
        req.on('error', reject);
        req.on('end', () => resolve({ status, body }));
      });
    try {
      expect((await get(2000)).status).toBe(200);
      const big = await get(5000);
      expect(big.status).toBe(400);
      expect(JSON.parse(big.body).error).toBe('bad_request');
      expect(upstream.requests.length).toBe(before + 1);
    } finally {
      session.destroy();
    }
  });

  it('rate limit by IP behind one trusted proxy: keyed by the x-forwarded-for client, 429 with retry-after', async () => {
    const from = (ip: string) => call(gw, '/limited/a', { 'x-forwarded-for': ip });
    expect((await from('203.0.113.1')).status).toBe(200);
    expect((await from('203.0.113.1')).status).toBe(200);
    const third = await from('203.0.113.1');
    expect(third.status).toBe(429);
    expect(third.headers['retry-after']).toBe('1');
    expect(third.headers['ratelimit-remaining']).toBe('0');
    expect((await from('203.0.113.2')).status).toBe(200);
  });

  it('a reload applies new gateway routes', async () => {
    const dir = tempDir('meshlet-gw-reload-');
    const file = join(dir, 'meshlet.yaml');
    const config = (prefix: string): ConfigInput => ({
      listeners: {
        outbound: { port: 0 },
        admin: { port: 0 },
        adminGrpc: { enabled: false },
        gateway: { address: '127.0.0.1', port: 0 },
      },
      registry: { endpoints: { web: [upstream.endpoint] } },
      gateway: { routes: [{ match: { pathPrefix: prefix }, upstream: 'web' }] },
    });
    writeFileSync(file, stringify(config('/old/')));
    const daemon = await Daemon.start(validateConfig(config('/old/')), {
      logger: createLogger('error'),
      configFile: file,
      processMetrics: false,
    });
    try {
      const base = gatewayUrl(daemon);
      expect((await call(base, '/old/x')).status).toBe(200);
      expect((await call(base, '/new/x')).status).toBe(404);
      writeFileSync(file, stringify(config('/new/')));
      expect(await daemon.reload()).toBe(true);
      expect((await call(base, '/old/x')).status).toBe(404);
      expect((await call(base, '/new/x')).status).toBe(200);
    } finally {
      await daemon.shutdown('test');
    }
  });
});

describe('gateway TLS termination', () => {
  it('serves HTTPS with x-forwarded-proto https upstream, and a replaced certificate is used for new connections', async () => {
    const upstream = await startUpstream();
    const ca = await createDevCa({ trustDomain: 'gw.test' });
    const dir = tempDir('meshlet-gw-tls-');
    const write = async (service: string) => {
      const leaf = await issueLeaf({ ca, service, trustDomain: 'gw.test' });
      writeFileSync(join(dir, 'gw-key.pem'), leaf.keyPem);
      writeFileSync(join(dir, 'gw.pem'), leaf.certPem);
    };
    await write('first');
    const m = await startMeshlet({
      listeners: {
        gateway: {
          address: '127.0.0.1',
          port: 0,
          tls: { cert: join(dir, 'gw.pem'), key: join(dir, 'gw-key.pem') },
        },
      },
      registry: { endpoints: { web: [upstream.endpoint] } },
      gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'web' }] },
    });
    const port = m.daemon.addresses().gateway!.port;
    const get = () =>
      new Promise<{ cn: string; body: string }>((resolve, reject) => {
        const socket = connect(
          { port, host: '127.0.0.1', ca: ca.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] },
          () => {
            const cn = String(socket.getPeerCertificate().subject.CN);
            socket.write(
              'GET /hello HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n',
            );
            let reply = '';
            socket.on('data', (d) => (reply += d));
            socket.on('end', () => resolve({ cn, body: parseReply(reply).body }));
          },
        );
        socket.on('error', reject);
      });
    try {
      const first = await get();
      expect(first.cn).toBe('first');
      expect(JSON.parse(first.body).headers['x-forwarded-proto']).toBe('https');
      await write('second');
      const deadline = Date.now() + 3000;
      let cn = first.cn;
      while (cn !== 'second' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        cn = (await get()).cn;
      }
      expect(cn).toBe('second');
    } finally {
      await m.close();
      await upstream.close();
    }
  });
});

describe('gateway idle HTTP/2 sessions', () => {
  /** Opens a session, makes one request, then idles: resolves with the GOAWAY code and the idle time before close, ms. */
  async function idleAfterOneRequest(
    session: http2.ClientHttp2Session,
  ): Promise<{ status: number; goaway: number | null; idleMs: number }> {
    let goaway: number | null = null;
    session.on('goaway', (code) => (goaway = code));
    session.on('error', () => {});
    const closed = new Promise<void>((r) => session.on('close', () => r()));
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': '/hello', ':authority': 'localhost' });
      let code = 0;
      req.on('response', (h) => (code = Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.on('end', () => resolve(code));
    });
    const idleFrom = performance.now();
    await closed;
    return { status, goaway, idleMs: performance.now() - idleFrom };
  }

  it('closes an idle h2c or h2 session with GOAWAY after keepAliveTimeout, as it closes idle HTTP/1.1 connections', async () => {
    const upstream = await startUpstream();
    const ca = await createDevCa({ trustDomain: 'gw.test' });
    const dir = tempDir('meshlet-gw-h2-');
    const leaf = await issueLeaf({ ca, service: 'localhost', trustDomain: 'gw.test' });
    writeFileSync(join(dir, 'gw-key.pem'), leaf.keyPem);
    writeFileSync(join(dir, 'gw.pem'), leaf.certPem);
    const gateway = (tls: boolean) =>
      startMeshlet({
        listeners: {
          gateway: {
            address: '127.0.0.1',
            port: 0,
            keepAliveTimeout: '300ms',
            ...(tls ? { tls: { cert: join(dir, 'gw.pem'), key: join(dir, 'gw-key.pem') } } : {}),
          },
        },
        registry: { endpoints: { web: [upstream.endpoint] } },
        gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'web' }] },
      });
    const [plain, secure] = [await gateway(false), await gateway(true)];
    try {
      const h2c = await idleAfterOneRequest(
        http2.connect(`http://127.0.0.1:${plain.daemon.addresses().gateway!.port}`),
      );
      const h2 = await idleAfterOneRequest(
        http2.connect(`https://127.0.0.1:${secure.daemon.addresses().gateway!.port}`, {
          ca: ca.certPem,
          servername: 'localhost',
        }),
      );
      for (const r of [h2c, h2]) {
        expect(r.status).toBe(200);
        expect(r.goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
        expect(r.idleMs).toBeGreaterThanOrEqual(250);
        expect(r.idleMs).toBeLessThan(3000);
      }
    } finally {
      await plain.close();
      await secure.close();
      await upstream.close();
    }
  });
});
