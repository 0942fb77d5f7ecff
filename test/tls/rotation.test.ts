// Acceptance: certificate files rewritten during a steady request stream → zero failures, new serials on new connections.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { writeLeaf } from '../../src/tls/dev-ca.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  makePki,
  metricValue,
  startInbound,
  startOutbound,
  type TestPki,
  tlsRequest,
} from './tls-helpers.ts';

let pki: TestPki;
let app: TestUpstream;

beforeAll(async () => {
  pki = await makePki();
  app = await startUpstream();
});
afterAll(async () => {
  await app?.close();
});

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('certificate rotation from files', () => {
  it('rewriting both sides’ files mid-stream fails no request; new connections present the new certificates', async () => {
    const b = await startInbound(pki, { service: 'orders', appPort: app.port, allow: ['web'] });
    const a = await startOutbound(pki, 'web', { orders: [{ port: b.port }] });
    try {
      const oldOrders = b.tls.material.cert.serialNumber;
      const oldWeb = a.tls.material.cert.serialNumber;
      const statuses: number[] = [];
      const errors: string[] = [];
      let stop = false;
      const worker = async () => {
        while (!stop) {
          try {
            const res = await request(`${a.url}/tick`, { headers: { host: 'orders' } });
            await res.body.text();
            statuses.push(res.statusCode);
          } catch (err) {
            errors.push((err as Error).message);
          }
        }
      };
      const workers = [worker(), worker(), worker(), worker()];
      await until('some traffic', () => statuses.length > 50);

      const newOrders = await pki.issue('orders');
      const newWeb = await pki.issue('web');
      await writeLeaf(pki.dir, 'orders', newOrders);
      await writeLeaf(pki.dir, 'web', newWeb);
      await until('B reload', () => b.tls.material.cert.serialNumber === newOrders.serialNumber);
      await until('A reload', () => a.tls.material.cert.serialNumber === newWeb.serialNumber);
      const atRotation = statuses.length;
      // Let keep-alive connections end so A opens new ones with its new certificate.
      b.listener.closeIdleConnections();
      await until('traffic after rotation', () => statuses.length > atRotation + 100);
      stop = true;
      await Promise.all(workers);

      expect(errors).toEqual([]);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      expect(statuses.length).toBeGreaterThan(150);
      expect(newOrders.serialNumber).not.toBe(oldOrders);
      // A new connection to B presents B's new certificate.
      const fresh = await tlsRequest(b.port, {
        ca: pki.ca.certPem,
        cert: newWeb.certPem,
        key: newWeb.keyPem,
      });
      expect(fresh.status).toBe(200);
      expect(fresh.serverSerial).toBe(newOrders.serialNumber);
      // B saw A's new certificate on A's new connections (and the old one before).
      const serials = new Set(b.logs.filter((l) => l.msg === 'access').map((l) => l.peerSerial));
      expect(serials.has(oldWeb)).toBe(true);
      expect(serials.has(newWeb.serialNumber)).toBe(true);
      // A log line and a metric per reload; the expiry gauge follows the new certificate.
      expect(b.logs.filter((l) => l.msg === 'tls certificate reloaded').map((l) => l.serial)).toEqual([
        newOrders.serialNumber,
      ]);
      expect(
        await metricValue(b.metrics, 'meshlet_tls_certificate_reloads_total', {
          source: 'files',
          result: 'ok',
        }),
      ).toBe(2);
      expect(
        await metricValue(b.metrics, 'meshlet_tls_certificate_expiry_timestamp_seconds', { source: 'files' }),
      ).toBe(Math.floor(b.tls.material.cert.notAfter.getTime() / 1000));
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a key that does not match the certificate is refused after settling; the old certificate stays', async () => {
    const b = await startInbound(pki, { service: 'ledger', appPort: app.port });
    try {
      const before = b.tls.material.cert.serialNumber;
      const x = await pki.issue('ledger');
      const y = await pki.issue('ledger');
      await writeLeaf(pki.dir, 'ledger', { certPem: x.certPem, keyPem: y.keyPem });
      await until(
        'failed reload',
        () => b.logs.some((l) => l.msg === 'tls certificate reload failed; keeping the current certificate'),
        8000,
      );
      expect(b.tls.material.cert.serialNumber).toBe(before);
    } finally {
      await b.close();
    }
  });
});
