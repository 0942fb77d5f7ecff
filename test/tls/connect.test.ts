// Acceptance: Consul Connect mode against the double — leaf fetched and used, rotated, renewed before expiry, intentions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ConnectCaSource } from '../../src/tls/connect-ca-source.ts';
import { TlsMetrics } from '../../src/telemetry/tls-metrics.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  captureLogger,
  makePki,
  startInbound,
  startOutbound,
  type TestPki,
  tlsRequest,
} from './tls-helpers.ts';

let consul: ConsulDouble;
let app: TestUpstream;
let pki: TestPki;

function source(
  service: string,
  extra: Partial<ConstructorParameters<typeof ConnectCaSource>[0]> = {},
): ConnectCaSource {
  const { logger } = captureLogger();
  return new ConnectCaSource({
    address: consul.url,
    service,
    logger,
    metrics: new TlsMetrics(new Metrics({ processMetrics: false }).registry),
    backoffBaseMs: 50,
    ...extra,
  });
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  consul = new ConsulDouble({ jitter: false });
  await consul.start();
  app = await startUpstream();
  pki = await makePki(); // unused by Connect sources; startInbound/startOutbound take a source instead
});
afterAll(async () => {
  await app?.close();
  await consul?.stop();
});

describe('Consul Connect CA', () => {
  it('the double serves real P-256 leaves with Consul SPIFFE IDs signed by its root', async () => {
    const res = await request(`${consul.url}/v1/agent/connect/ca/leaf/web`);
    const leaf = (await res.body.json()) as { CertPEM: string; ServiceURI: string; ValidBefore: string };
    expect(leaf.ServiceURI).toBe(`spiffe://${consul.connect.trustDomain}/ns/default/dc/dc1/svc/web`);
    const roots = (await (await request(`${consul.url}/v1/agent/connect/ca/roots`)).body.json()) as {
      TrustDomain: string;
      Roots: { RootCert: string; Active: boolean }[];
    };
    expect(roots.TrustDomain).toBe(consul.connect.trustDomain);
    const { X509Certificate } = await import('node:crypto');
    const cert = new X509Certificate(leaf.CertPEM);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.verify(new X509Certificate(roots.Roots[0]!.RootCert).publicKey)).toBe(true);
  });

  it('A(web) → B(orders) with leaves from Consul: used, rotated on the double, and an intention denying web → 403', async () => {
    const bSource = source('orders', { authorizeCacheMs: 100 });
    const b = await startInbound(pki, { service: 'orders', appPort: app.port, source: bSource });
    const a = await startOutbound(pki, 'web', { orders: [{ port: b.port }] }, source('web'));
    try {
      const first = await request(`${a.url}/x`, { headers: { host: 'orders' } });
      expect(first.statusCode).toBe(200);
      const seen = (await first.body.json()) as { headers: Record<string, string> };
      expect(seen.headers['x-meshlet-peer-identity']).toBe('web');
      expect(seen.headers['x-meshlet-peer-spiffe-id']).toBe(
        `spiffe://${consul.connect.trustDomain}/ns/default/dc/dc1/svc/web`,
      );
      const oldSerial = b.tls.material.cert.serialNumber;
      const oldLeaf = await consul.connect.leaf('orders');
      expect(oldSerial).toBe(oldLeaf.serialNumber);

      // Rotation on the double reaches B through the blocking query; new connections present it.
      const rotated = await consul.connect.rotateLeaf('orders');
      await until(
        'B to load the rotated leaf',
        () => b.tls.material.cert.serialNumber === rotated.serialNumber,
      );
      const web = await consul.connect.leaf('web');
      const direct = await tlsRequest(b.port, {
        ca: consul.connect.activeRoot.certPem,
        cert: web.certPem,
        key: web.keyPem,
      });
      expect(direct.status).toBe(200);
      expect(direct.serverSerial).toBe(rotated.serialNumber);
      expect(
        b.logs.some((l) => l.msg === 'tls certificate reloaded' && l.serial === rotated.serialNumber),
      ).toBe(true);

      // An intention denying web: B refuses with 403 before the app sees anything.
      consul.connect.setIntentions([{ source: 'web', destination: 'orders', action: 'deny' }]);
      await new Promise((r) => setTimeout(r, 150));
      const before = app.requests.length;
      const denied = await request(`${a.url}/x`, { headers: { host: 'orders' } });
      expect(denied.statusCode).toBe(403);
      expect(denied.headers['x-meshlet-error']).toBe('forbidden');
      expect(((await denied.body.json()) as { message: string }).message).toMatch(/intention/i);
      expect(app.requests.length).toBe(before);
    } finally {
      consul.connect.setIntentions([]);
      await a.close();
      await b.close();
    }
  });

  it('re-fetches the leaf before ValidBefore even when the blocking query never returns', async () => {
    consul.connect.leafTtlMs = 3000;
    consul.connect.holdLeafQueries = true;
    const src = source('billing');
    try {
      await consul.connect.rotateLeaf('billing');
      await src.start();
      const first = src.current().cert;
      const changed = new Promise<string>((resolve) => src.onChange((m) => resolve(m.cert.serialNumber)));
      const next = await Promise.race([
        changed,
        new Promise<string>((r) => setTimeout(() => r('none'), 6000)),
      ]);
      expect(next).not.toBe('none');
      expect(next).not.toBe(first.serialNumber);
      expect(Date.now()).toBeLessThan(first.notAfter.getTime());
    } finally {
      consul.connect.holdLeafQueries = false;
      consul.connect.leafTtlMs = 72 * 3_600_000;
      await src.stop();
    }
  });
});
