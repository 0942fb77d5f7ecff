// Connect CA answers with unusable material: meshlet keeps the previous leaf and roots, counts and logs the failure, retries.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { ConnectCa } from '../consul-double/connect-ca.ts';
import { consulRegistry, metric, within } from '../consul/consul-helpers.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { issueLeaf } from '../../src/tls/dev-ca.ts';
import { type TlsReply, tlsRequest } from './tls-helpers.ts';

const GARBAGE_PEM = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
const FAILED = 'meshlet_tls_certificate_reloads_total{source="consul",result="failed"}';

let consul: ConsulDouble;
let app: TestUpstream;

beforeAll(async () => {
  consul = new ConsulDouble({ jitter: false });
  await consul.start();
  app = await startUpstream();
});
afterAll(async () => {
  consul?.setTampering(null);
  await app?.close();
  await consul?.stop();
});

/** A meshlet for `service` with an mTLS inbound listener and certificates from the double's Connect CA. */
function meshletFor(service: string): Promise<InProcessMeshlet> {
  return startMeshlet({
    service: { name: service, port: app.port, address: '127.0.0.1' },
    listeners: { inbound: { address: '127.0.0.1', port: 0 } },
    registry: consulRegistry(consul, { register: false }),
    tls: { source: 'consul' },
    shutdown: { drainDelay: 0 },
    accessLog: { enabled: false },
  } as never);
}

/** One request over a fresh mTLS connection to the meshlet's inbound listener, as `web`, trusting every root. */
async function handshake(mesh: InProcessMeshlet): Promise<TlsReply> {
  const web = await consul.connect.leaf('web');
  const roots = (consul.connect.rootsAnswer().value as { Roots: { RootCert: string }[] }).Roots;
  return tlsRequest(mesh.daemon.addresses().inbound!.port, {
    ca: roots.map((r) => r.RootCert).join('\n'),
    cert: web.certPem,
    key: web.keyPem,
  });
}

/** The leaf answer of `service` now, with `patch` applied, as JSON text. */
async function leafBody(service: string, patch: Record<string, string>): Promise<string> {
  return JSON.stringify({
    ...(ConnectCa.leafAnswer(await consul.connect.leaf(service)) as object),
    ...patch,
  });
}

/** Warnings meshlet logged about refused Connect CA material. */
function refusals(mesh: InProcessMeshlet): Record<string, unknown>[] {
  return mesh.logs.filter((l) => l.level === 'warn' && String(l.msg).startsWith('consul connect'));
}

describe('Connect CA answers with unusable material', () => {
  it('a leaf whose certificate is garbage is refused: the previous leaf keeps serving and the next good leaf is applied', async () => {
    const mesh = await meshletFor('orders');
    try {
      const before = await handshake(mesh);
      expect(before.status).toBe(200);
      const good = mesh.daemon.tls!.material.cert.serialNumber;
      expect(before.serverSerial).toBe(good);

      consul.setTampering({
        path: '/v1/agent/connect/ca/leaf/orders',
        times: 1,
        body: await leafBody('orders', { CertPEM: GARBAGE_PEM }),
      });
      // The rotation wakes meshlet's blocked leaf query; its answer is the garbage.
      const rotated = await consul.connect.rotateLeaf('orders');
      await within(5000, async () => (await metric(mesh.admin, FAILED)) >= 1, 'the refusal counted');
      const during = await handshake(mesh);
      expect(during.status).toBe(200);

      // Retried on the error schedule, the agent's real answer (the rotated leaf) is applied.
      await within(
        5000,
        () => mesh.daemon.tls!.material.cert.serialNumber === rotated.serialNumber,
        'the rotated leaf applied after the refused answer',
      );
      const after = await handshake(mesh);
      expect(after.status).toBe(200);
      expect(after.serverSerial).toBe(rotated.serialNumber);
      expect(await metric(mesh.admin, FAILED)).toBe(1);
      expect(refusals(mesh)).toHaveLength(1);
    } finally {
      consul.setTampering(null);
      await mesh.close();
    }
  });

  it('a leaf whose key does not match its certificate is refused and never half-applied', async () => {
    const mesh = await meshletFor('billing');
    try {
      expect((await handshake(mesh)).status).toBe(200);
      const current = await consul.connect.leaf('billing');
      const issue = () =>
        issueLeaf({
          ca: consul.connect.activeRoot,
          service: 'billing',
          trustDomain: consul.connect.trustDomain,
        });
      const [other, third] = await Promise.all([issue(), issue()]);
      consul.setTampering({
        path: '/v1/agent/connect/ca/leaf/billing',
        times: 1,
        body: await leafBody('billing', { CertPEM: other.certPem, PrivateKeyPEM: third.keyPem }),
      });
      const rotated = await consul.connect.rotateLeaf('billing');
      await within(5000, async () => (await metric(mesh.admin, FAILED)) >= 1, 'the refusal counted');
      expect(mesh.daemon.tls!.source.current().keyPem).not.toBe(third.keyPem);
      const during = await handshake(mesh);
      expect(during.status).toBe(200);
      expect([current.serialNumber, rotated.serialNumber]).toContain(during.serverSerial);

      await within(
        5000,
        () => mesh.daemon.tls!.material.cert.serialNumber === rotated.serialNumber,
        'the rotated leaf applied after the refused answer',
      );
      const after = await handshake(mesh);
      expect(after.status).toBe(200);
      expect(after.serverSerial).toBe(rotated.serialNumber);
      expect(refusals(mesh)).toHaveLength(1);
    } finally {
      consul.setTampering(null);
      await mesh.close();
    }
  });

  it('roots whose certificate is garbage are refused: the old roots keep serving, then the new roots and leaf are applied', async () => {
    const mesh = await meshletFor('payments');
    try {
      expect((await handshake(mesh)).status).toBe(200);
      const roots = consul.connect.rootsAnswer().value as { Roots: Record<string, unknown>[] };
      consul.setTampering({
        path: '/v1/agent/connect/ca/roots',
        times: 1,
        body: JSON.stringify({ ...roots, Roots: roots.Roots.map((r) => ({ ...r, RootCert: GARBAGE_PEM })) }),
      });
      // A new root: meshlet's roots query gets the garbage, its leaf query the leaf signed by the new root.
      await consul.connect.rotateRoot();
      const rotated = await consul.connect.leaf('payments');
      await within(5000, async () => (await metric(mesh.admin, FAILED)) >= 1, 'the refusal counted');

      // The retried roots answer is applied, so is the new leaf; `web`'s new leaf (new root) is trusted.
      await within(
        5000,
        async () => {
          const reply = await handshake(mesh);
          return reply.status === 200 && reply.serverSerial === rotated.serialNumber;
        },
        'the new roots and leaf applied after the refused answer',
      );
      expect(mesh.daemon.tls!.material.caPem).toContain(consul.connect.activeRoot.certPem.trim());
      expect(refusals(mesh)).toHaveLength(1);
    } finally {
      consul.setTampering(null);
      await mesh.close();
    }
  });

  it('a leaf issued for another service is refused: peers keep seeing this service', async () => {
    const mesh = await meshletFor('ledger');
    try {
      consul.setTampering({
        path: '/v1/agent/connect/ca/leaf/ledger',
        times: 1,
        body: await leafBody('web', {}),
      });
      const rotated = await consul.connect.rotateLeaf('ledger');
      await within(5000, async () => (await metric(mesh.admin, FAILED)) >= 1, 'the refusal counted');
      await within(
        5000,
        () => mesh.daemon.tls!.material.cert.serialNumber === rotated.serialNumber,
        'the rotated leaf applied after the refused answer',
      );
      expect(mesh.daemon.tls!.material.cert.identity?.service).toBe('ledger');
      expect(refusals(mesh)).toHaveLength(1);
      expect(String(refusals(mesh)[0]!.reason)).toMatch(/names web, not ledger/);
    } finally {
      consul.setTampering(null);
      await mesh.close();
    }
  });
});
