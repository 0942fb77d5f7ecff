// Acceptance: A(web) → mTLS → B(orders) → app, and every refusal happens before the app sees a byte.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  makePki,
  metricValue,
  startInbound,
  startOutbound,
  type TestInbound,
  type TestOutbound,
  type TestPki,
  tlsRequest,
} from './tls-helpers.ts';

let pki: TestPki;
let app: TestUpstream;
let b: TestInbound;
let a: TestOutbound;

beforeAll(async () => {
  pki = await makePki();
  app = await startUpstream();
  b = await startInbound(pki, { service: 'orders', appPort: app.port, allow: ['web'] });
  a = await startOutbound(pki, 'web', { orders: [{ port: b.port }] });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await app?.close();
});

describe('two meshlets over mTLS', () => {
  it("web's request goes A → mTLS → B → orders app, and the app sees identity web", async () => {
    const res = await request(`${a.url}/v1/orders/7`, {
      headers: {
        host: 'orders',
        'x-meshlet-peer-identity': 'admin',
        'x-meshlet-peer-spiffe-id': 'spiffe://x/svc/admin',
      },
    });
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as { url: string; headers: Record<string, string> };
    expect(body.url).toBe('/v1/orders/7');
    // The spoofed copies from the app were removed; meshlet B set the verified identity.
    expect(body.headers['x-meshlet-peer-identity']).toBe('web');
    expect(body.headers['x-meshlet-peer-spiffe-id']).toBe(`spiffe://${pki.trustDomain}/svc/web`);
    expect(body.headers['x-forwarded-proto']).toBe('http');
    expect(
      await metricValue(b.metrics, 'meshlet_tls_handshakes_total', { direction: 'inbound', result: 'ok' }),
    ).toBeGreaterThan(0);
    expect(
      await metricValue(a.metrics, 'meshlet_tls_handshakes_total', { direction: 'outbound', result: 'ok' }),
    ).toBeGreaterThan(0);
  });

  it('a caller sending x-meshlet-peer-identity itself gets it replaced', async () => {
    const web = await pki.issue('web');
    const seen = app.requests.length;
    const reply = await tlsRequest(b.port, {
      ca: pki.ca.certPem,
      cert: web.certPem,
      key: web.keyPem,
      headers: { 'x-meshlet-peer-identity': 'orders-admin' },
    });
    expect(reply.status).toBe(200);
    const got = app.requests
      .slice(seen)
      .map(
        (r) =>
          r.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'x-meshlet-peer-identity').length,
      );
    expect(got).toEqual([1]);
    expect(app.requests.at(-1)!.headers['x-meshlet-peer-identity']).toBe('web');
  });
});

describe('refused before the app sees anything', () => {
  async function appUntouched(fn: () => Promise<void>): Promise<void> {
    const before = app.requests.length;
    await fn();
    expect(app.requests.length).toBe(before);
  }

  it('an identity not in listeners.inbound.allow gets 403 forbidden', async () => {
    const billing = await pki.issue('billing');
    await appUntouched(async () => {
      const reply = await tlsRequest(b.port, {
        ca: pki.ca.certPem,
        cert: billing.certPem,
        key: billing.keyPem,
      });
      expect(reply.status).toBe(403);
      expect(reply.headers?.['x-meshlet-error']).toBe('forbidden');
      expect(JSON.parse(reply.body!).error).toBe('forbidden');
    });
    expect(
      await metricValue(b.metrics, 'meshlet_inbound_denied_total', {
        caller: 'billing',
        reason: 'forbidden',
      }),
    ).toBe(1);
  });

  it('no client certificate: the connection is closed, counted as no_client_certificate', async () => {
    await appUntouched(async () => {
      const reply = await tlsRequest(b.port, { ca: pki.ca.certPem });
      expect(reply.status).toBeUndefined();
      expect(reply.error).toBeDefined();
    });
    expect(
      await metricValue(b.metrics, 'meshlet_tls_handshakes_total', {
        direction: 'inbound',
        result: 'failed',
        reason: 'no_client_certificate',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('a certificate from another CA is refused (untrusted)', async () => {
    const other = await makePki();
    const web = await other.issue('web');
    await appUntouched(async () => {
      const reply = await tlsRequest(b.port, { ca: pki.ca.certPem, cert: web.certPem, key: web.keyPem });
      expect(reply.status).toBeUndefined();
    });
    expect(
      await metricValue(b.metrics, 'meshlet_tls_handshakes_total', {
        direction: 'inbound',
        result: 'failed',
        reason: 'untrusted',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('an expired certificate is refused (expired)', async () => {
    const web = await pki.issue('web', { notAfter: new Date(Date.now() - 3_600_000) });
    await appUntouched(async () => {
      const reply = await tlsRequest(b.port, { ca: pki.ca.certPem, cert: web.certPem, key: web.keyPem });
      expect(reply.status).toBeUndefined();
    });
    expect(
      await metricValue(b.metrics, 'meshlet_tls_handshakes_total', {
        direction: 'inbound',
        result: 'failed',
        reason: 'expired',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('plaintext HTTP to the inbound port gets no HTTP answer (not_tls)', async () => {
    await appUntouched(async () => {
      const reply = await new Promise<string>((resolve) => {
        const s = connect(b.port, '127.0.0.1');
        let got = '';
        s.on('data', (d) => {
          got += d.toString('latin1');
        });
        s.on('close', () => resolve(got));
        s.on('error', () => undefined);
        s.setTimeout(5000, () => s.destroy());
        s.write('GET / HTTP/1.1\r\nhost: orders\r\n\r\n');
      });
      expect(reply).not.toMatch(/^HTTP\/1\.1 200/);
    });
    expect(
      await metricValue(b.metrics, 'meshlet_tls_handshakes_total', {
        direction: 'inbound',
        result: 'failed',
        reason: 'not_tls',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('A refuses a server whose certificate names another service, as a connect failure', async () => {
    const impostorApp = await startUpstream();
    const impostor = await startInbound(pki, { service: 'payments', appPort: impostorApp.port, allow: '*' });
    const a2 = await startOutbound(pki, 'web', { orders: [{ port: impostor.port }] });
    try {
      const res = await request(`${a2.url}/`, { headers: { host: 'orders' } });
      expect(res.statusCode).toBe(502);
      expect(res.headers['x-meshlet-error']).toBe('upstream_unreachable');
      await res.body.text();
      expect(impostorApp.requests.length).toBe(0);
      expect(
        await metricValue(a2.metrics, 'meshlet_tls_handshakes_total', {
          direction: 'outbound',
          result: 'failed',
          reason: 'wrong_identity',
        }),
      ).toBeGreaterThanOrEqual(1);
      expect(
        await metricValue(a2.metrics, 'meshlet_upstream_attempts_total', {
          upstream: 'orders',
          result: 'connect_failure',
        }),
      ).toBeGreaterThanOrEqual(1);
    } finally {
      await a2.close();
      await impostor.close();
      await impostorApp.close();
    }
  });
});
