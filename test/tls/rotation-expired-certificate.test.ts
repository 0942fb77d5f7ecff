// Certificate files rotated to an already expired certificate: refused, the valid one keeps serving, no outage.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { writeLeaf } from '../../src/tls/dev-ca.ts';
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

const RELOADED = 'tls certificate reloaded';
const FAILED = 'tls certificate reload failed; keeping the current certificate';

/** Waits until B logged a reload outcome after `from` lines, and returns that line. */
async function nextReloadOutcome(from: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 6000;
  for (;;) {
    const hit = b.logs.slice(from).find((l) => l.msg === RELOADED || l.msg === FAILED);
    if (hit !== undefined) return hit;
    if (Date.now() > deadline) throw new Error('no reload outcome logged');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function viaA(): Promise<number> {
  const res = await request(`${a.url}/orders/1`, { headers: { host: 'orders' } });
  await res.body.text();
  return res.statusCode;
}

describe('rotation to an expired certificate (source files)', () => {
  it('is refused and counted; new connections still get the valid certificate; a good file after it applies', async () => {
    expect(await viaA()).toBe(200);
    const valid = b.tls.material.cert;
    const failedBefore = await metricValue(b.metrics, 'meshlet_tls_certificate_reloads_total', {
      source: 'files',
      result: 'failed',
    });

    // A stale copy lands in the directory (a restored backup, a Secret rolled back): key and
    // certificate fit together and chain to the CA, but the certificate expired an hour ago.
    const stale = await pki.issue('orders', { notAfter: new Date(Date.now() - 3_600_000) });
    let from = b.logs.length;
    await writeLeaf(pki.dir, 'orders', stale);
    const outcome = await nextReloadOutcome(from);

    expect({ msg: outcome.msg, serial: b.tls.material.cert.serialNumber }).toEqual({
      msg: FAILED,
      serial: valid.serialNumber,
    });
    expect(String(outcome.reason)).toMatch(/^tls\.cert: .*orders\.pem: expired at \d{4}-\d\d-\d\dT/);
    expect(
      await metricValue(b.metrics, 'meshlet_tls_certificate_reloads_total', {
        source: 'files',
        result: 'failed',
      }),
    ).toBe(failedBefore + 1);
    expect(
      await metricValue(b.metrics, 'meshlet_tls_certificate_expiry_timestamp_seconds', { source: 'files' }),
    ).toBe(Math.floor(valid.notAfter.getTime() / 1000));

    // New connections, from a peer meshlet and directly, still get the valid certificate.
    b.listener.closeIdleConnections();
    expect(await viaA()).toBe(200);
    const web = await pki.issue('web');
    const direct = await tlsRequest(b.port, { ca: pki.ca.certPem, cert: web.certPem, key: web.keyPem });
    expect({ status: direct.status, serverSerial: direct.serverSerial }).toEqual({
      status: 200,
      serverSerial: valid.serialNumber,
    });

    // The next good certificate is applied as usual.
    const fresh = await pki.issue('orders');
    from = b.logs.length;
    await writeLeaf(pki.dir, 'orders', fresh);
    expect((await nextReloadOutcome(from)).msg).toBe(RELOADED);
    expect(b.tls.material.cert.serialNumber).toBe(fresh.serialNumber);
    b.listener.closeIdleConnections();
    expect(await viaA()).toBe(200);
  });
});
