// Fixture of the refused-rotation tests: a peer meshlet pair over mTLS (A → B → app) and the whole check that B refuses a rotated set and keeps serving its valid certificate.
import { request } from 'undici';
import { expect } from 'vitest';
import { writeLeaf } from '../../src/tls/dev-ca.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  metricValue,
  startInbound,
  startOutbound,
  type TestInbound,
  type TestOutbound,
  type TestPki,
  tlsRequest,
} from './tls-helpers.ts';

const RELOADED = 'tls certificate reloaded';
const FAILED = 'tls certificate reload failed; keeping the current certificate';

/** B (`orders`, cert files in `pki.dir`) behind A (`web`), and B's app. */
export interface RotationMesh {
  readonly pki: TestPki;
  readonly app: TestUpstream;
  readonly b: TestInbound;
  readonly a: TestOutbound;
  close(): Promise<void>;
}

/** Starts {@link RotationMesh} on `pki`. */
export async function rotationMesh(pki: TestPki): Promise<RotationMesh> {
  const app = await startUpstream();
  const b = await startInbound(pki, { service: 'orders', appPort: app.port, allow: ['web'] });
  const a = await startOutbound(pki, 'web', { orders: [{ port: b.port }] });
  return {
    pki,
    app,
    b,
    a,
    close: async () => {
      await a.close();
      await b.close();
      await app.close();
    },
  };
}

/** Waits (at most 6 s) until B logged a reload outcome after its first `from` lines, and returns that line. */
async function nextReloadOutcome(b: TestInbound, from: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 6000;
  for (;;) {
    const hit = b.logs.slice(from).find((l) => l.msg === RELOADED || l.msg === FAILED);
    if (hit !== undefined) return hit;
    if (Date.now() > deadline) throw new Error('no reload outcome logged');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function viaA(m: RotationMesh): Promise<number> {
  const res = await request(`${m.a.url}/orders/1`, { headers: { host: 'orders' } });
  await res.body.text();
  return res.statusCode;
}

const failedReloads = (b: TestInbound) =>
  metricValue(b.metrics, 'meshlet_tls_certificate_reloads_total', { source: 'files', result: 'failed' });

/**
 * Writes `refused` as B's certificate files and checks the whole refusal: the outcome logged within
 * `withinMs` is the failure with a reason matching `reason`, counted once; the certificate B serves
 * and the one its source reports stay the valid one, the expiry gauge too; new connections, from A
 * and directly, get it; then a fresh certificate written after it is applied as usual.
 */
export async function expectRefusedRotation(
  m: RotationMesh,
  refused: { certPem: string; keyPem: string },
  reason: RegExp,
  withinMs = 6000,
): Promise<void> {
  const { b, pki } = m;
  expect(await viaA(m)).toBe(200);
  const valid = b.tls.material.cert;
  const failedBefore = await failedReloads(b);

  let from = b.logs.length;
  const started = Date.now();
  await writeLeaf(pki.dir, 'orders', refused);
  const outcome = await nextReloadOutcome(b, from);
  expect({
    msg: outcome.msg,
    served: b.tls.material.cert.serialNumber,
    reported: b.tls.source.current().cert.serialNumber,
  }).toEqual({ msg: FAILED, served: valid.serialNumber, reported: valid.serialNumber });
  expect(String(outcome.reason)).toMatch(reason);
  expect(Date.now() - started).toBeLessThan(withinMs);
  expect(await failedReloads(b)).toBe(failedBefore + 1);
  expect(
    await metricValue(b.metrics, 'meshlet_tls_certificate_expiry_timestamp_seconds', { source: 'files' }),
  ).toBe(Math.floor(valid.notAfter.getTime() / 1000));

  // New connections, from a peer meshlet and directly, still get the valid certificate.
  b.listener.closeIdleConnections();
  expect(await viaA(m)).toBe(200);
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
  expect((await nextReloadOutcome(b, from)).msg).toBe(RELOADED);
  expect(b.tls.material.cert.serialNumber).toBe(fresh.serialNumber);
  expect(b.tls.source.current().cert.serialNumber).toBe(fresh.serialNumber);
  expect(await failedReloads(b)).toBe(failedBefore + 1);
  b.listener.closeIdleConnections();
  expect(await viaA(m)).toBe(200);
}
