// Inbound protections: per-caller rate limit (429), max concurrent (503), header size (400, over HTTP/1.1 and HTTP/2), slow clients.
import * as http2 from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, metricValue, startInbound, type TestPki, tlsRequest } from './tls-helpers.ts';

let pki: TestPki;
let app: TestUpstream;
let web: { certPem: string; keyPem: string };
let billing: { certPem: string; keyPem: string };

beforeAll(async () => {
  pki = await makePki();
  app = await startUpstream();
  web = await pki.issue('web');
  billing = await pki.issue('billing');
});
afterAll(async () => {
  await app?.close();
});

const as = (who: { certPem: string; keyPem: string }) => ({
  ca: pki.ca.certPem,
  cert: who.certPem,
  key: who.keyPem,
});

describe('inbound protections', () => {
  it('a caller over its rate limit gets 429 with retry-after while another caller is unaffected', async () => {
    const b = await startInbound(pki, {
      service: 'orders',
      appPort: app.port,
      rate: { perSecond: 1, burst: 3 },
    });
    try {
      const webStatuses: number[] = [];
      for (let i = 0; i < 5; i++) webStatuses.push((await tlsRequest(b.port, as(web))).status!);
      expect(webStatuses.slice(0, 3)).toEqual([200, 200, 200]);
      const limited = await tlsRequest(b.port, as(web));
      expect(limited.status).toBe(429);
      expect(limited.headers?.['x-meshlet-error']).toBe('rate_limited');
      expect(Number(limited.headers?.['retry-after'])).toBeGreaterThanOrEqual(1);
      for (let i = 0; i < 3; i++) expect((await tlsRequest(b.port, as(billing))).status).toBe(200);
      expect(
        await metricValue(b.metrics, 'meshlet_inbound_denied_total', {
          caller: 'web',
          reason: 'rate_limited',
        }),
      ).toBeGreaterThanOrEqual(3);
      expect(
        await metricValue(b.metrics, 'meshlet_inbound_denied_total', {
          caller: 'billing',
          reason: 'rate_limited',
        }),
      ).toBe(0);
    } finally {
      await b.close();
    }
  });

  it('past maxConcurrent inbound requests the next gets 503 overloaded', async () => {
    const release: (() => void)[] = [];
    const slow = await startUpstream((req, res) => {
      req.resume();
      release.push(() => res.end('late'));
    });
    const b = await startInbound(pki, { service: 'orders', appPort: slow.port, maxConcurrent: 2 });
    try {
      const first = [tlsRequest(b.port, as(web)), tlsRequest(b.port, as(web))];
      const deadline = Date.now() + 5000;
      while (slow.requests.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const third = await tlsRequest(b.port, as(web));
      expect(third.status).toBe(503);
      expect(third.headers?.['x-meshlet-error']).toBe('overloaded');
      expect(slow.requests.length).toBe(2);
      for (const r of release) r();
      expect((await Promise.all(first)).map((r) => r.status)).toEqual([200, 200]);
    } finally {
      await b.close();
      await slow.close();
    }
  });

  it('request headers over maxHeaderSize get 400 bad_request', async () => {
    const b = await startInbound(pki, { service: 'orders', appPort: app.port, maxHeaderSize: 2048 });
    const before = app.requests.length;
    try {
      const reply = await tlsRequest(b.port, { ...as(web), headers: { 'x-big': 'a'.repeat(4096) } });
      expect(reply.status ?? 400).toBe(400);
      // The same limit over HTTP/2 (ALPN h2, as a peer meshlet calls).
      const session = http2.connect(`https://127.0.0.1:${b.port}`, {
        ...as(web),
        checkServerIdentity: () => undefined,
      });
      session.on('error', () => {});
      const h2 = await new Promise<{ status: number; error: unknown }>((resolve, reject) => {
        const req = session.request({ ':path': '/', ':authority': 'orders', 'x-big': 'a'.repeat(4096) });
        let status = 0;
        let error: unknown;
        req.on('response', (h) => {
          status = Number(h[':status']);
          error = h['x-meshlet-error'];
        });
        req.on('error', reject);
        req.resume();
        req.on('end', () => resolve({ status, error }));
      });
      session.destroy();
      expect(h2).toEqual({ status: 400, error: 'bad_request' });
      expect(app.requests.length).toBe(before);
    } finally {
      await b.close();
    }
  });

  it('a client that sends its headers too slowly is cut off (headersTimeout)', async () => {
    const b = await startInbound(pki, { service: 'orders', appPort: app.port, headersTimeoutMs: 300 });
    const before = app.requests.length;
    try {
      const started = Date.now();
      const got = await new Promise<string>((resolve) => {
        const s = tlsConnect({
          host: '127.0.0.1',
          port: b.port,
          ...as(web),
          checkServerIdentity: () => undefined,
        });
        let text = '';
        s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nhost: orders\r\n'));
        s.on('data', (d) => {
          text += d.toString();
        });
        s.on('close', () => resolve(text));
        s.on('error', () => undefined);
        setTimeout(() => s.destroy(), 5000).unref();
      });
      expect(Date.now() - started).toBeLessThan(4000);
      expect(got === '' || /^HTTP\/1\.1 40[08]/.test(got)).toBe(true);
      expect(app.requests.length).toBe(before);
    } finally {
      await b.close();
    }
  });

  it('a client that sends its body too slowly is cut off (requestTimeout)', async () => {
    const b = await startInbound(pki, {
      service: 'orders',
      appPort: app.port,
      headersTimeoutMs: 300,
      requestTimeoutMs: 600,
    });
    try {
      const started = Date.now();
      await new Promise<void>((resolve) => {
        const s = tlsConnect({
          host: '127.0.0.1',
          port: b.port,
          ...as(web),
          checkServerIdentity: () => undefined,
        });
        s.on('secureConnect', () =>
          s.write('POST / HTTP/1.1\r\nhost: orders\r\ncontent-length: 100\r\n\r\nabc'),
        );
        s.on('data', () => undefined);
        s.on('close', () => resolve());
        s.on('error', () => undefined);
        setTimeout(() => s.destroy(), 5000).unref();
      });
      expect(Date.now() - started).toBeLessThan(4000);
    } finally {
      await b.close();
    }
  });
});
