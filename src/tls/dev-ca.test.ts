import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDevCa,
  type DevCa,
  type IssuedLeaf,
  issueLeaf,
  leafPaths,
  readDevCa,
  readLeaf,
  writeDevCa,
  writeLeaf,
} from './dev-ca.ts';
import { identityFromPeerCertificate, type WorkloadIdentity } from './identity.ts';

const TD = 'example.org';

describe('createDevCa and issueLeaf', () => {
  let ca: DevCa;
  beforeAll(async () => {
    ca = await createDevCa({ trustDomain: TD });
  });

  it('makes a self-signed EC P-256 CA with the CA extensions', () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.subjectAltName).toBe(`URI:spiffe://${TD}`);
    expect(cert.keyUsage).toBeUndefined(); // node reports extKeyUsage here; the CA has none
    const years = (cert.validToDate.getTime() - Date.now()) / (365.25 * 86_400_000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(cert.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);
    expect(() => tls.createSecureContext({ key: ca.keyPem, cert: ca.certPem })).not.toThrow();
  });

  it('issues a leaf that verifies against the CA and carries the SPIFFE ID', async () => {
    const leaf = await issueLeaf({ ca, service: 'web', trustDomain: TD });
    const cert = new X509Certificate(leaf.certPem);
    const caCert = new X509Certificate(ca.certPem);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.subject).toBe('CN=web');
    expect(cert.subjectAltName).toBe(
      'URI:spiffe://example.org/svc/web, DNS:web, DNS:localhost, IP Address:127.0.0.1',
    );
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(leaf.spiffeId).toBe('spiffe://example.org/svc/web');
    expect(leaf.serialNumber).toBe(cert.serialNumber);
    expect(leaf.serialNumber).toMatch(/^[0-9A-F]{32}$/);
    const hours = (leaf.notAfter.getTime() - Date.now()) / 3_600_000;
    expect(hours).toBeGreaterThan(71.9);
    expect(hours).toBeLessThanOrEqual(72);
    expect(cert.checkPrivateKey(createPrivateKey(leaf.keyPem))).toBe(true);
    // a fresh serial every time
    expect((await issueLeaf({ ca, service: 'web', trustDomain: TD })).serialNumber).not.toBe(
      leaf.serialNumber,
    );
  });

  it("honours Consul's form, names, serial and validity options", async () => {
    const notBefore = new Date(Date.UTC(2024, 0, 1));
    const leaf = await issueLeaf({
      ca,
      service: 'orders',
      trustDomain: 'td.consul',
      namespace: 'team',
      datacenter: 'dc2',
      dnsNames: ['orders.service.consul'],
      ipAddresses: ['10.0.0.7', '::1'],
      notBefore,
      validityHours: 24,
      serialNumber: '0a1b2c',
    });
    const cert = new X509Certificate(leaf.certPem);
    expect(leaf.spiffeId).toBe('spiffe://td.consul/ns/team/dc/dc2/svc/orders');
    expect(cert.subjectAltName).toBe(
      'URI:spiffe://td.consul/ns/team/dc/dc2/svc/orders, DNS:orders.service.consul, IP Address:10.0.0.7, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(cert.serialNumber).toBe('0A1B2C');
    expect(leaf.serialNumber).toBe('0A1B2C');
    expect(cert.validFromDate.toISOString()).toBe('2024-01-01T00:00:00.000Z');
    expect(leaf.notAfter.toISOString()).toBe('2024-01-02T00:00:00.000Z');
  });

  it('refuses a CA key that does not belong to the CA certificate, and bad names', async () => {
    const other = await createDevCa({ trustDomain: TD });
    await expect(
      issueLeaf({ ca: { certPem: ca.certPem, keyPem: other.keyPem }, service: 'web', trustDomain: TD }),
    ).rejects.toThrow('CA key does not match CA certificate');
    await expect(issueLeaf({ ca, service: 'a/b', trustDomain: TD })).rejects.toThrow(/service/);
    await expect(createDevCa({ trustDomain: 'Bad Domain' })).rejects.toThrow(/trust domain/);
    await expect(
      issueLeaf({
        ca,
        service: 'web',
        trustDomain: TD,
        notBefore: new Date(),
        notAfter: new Date(Date.now() - 1000),
      }),
    ).rejects.toThrow(/notAfter/);
  });
});

describe('writeDevCa, readDevCa, writeLeaf, readLeaf', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-dev-ca-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips the files with fixed names and a 0600 key', async () => {
    const ca = await createDevCa({ trustDomain: TD });
    const caDir = join(dir, 'ca');
    const paths = await writeDevCa(caDir, ca);
    expect(paths).toEqual({ cert: join(caDir, 'ca.pem'), key: join(caDir, 'ca-key.pem') });
    expect((await stat(paths.key)).mode & 0o777).toBe(0o600);
    expect(await readDevCa(caDir)).toEqual(ca);
    await expect(writeDevCa(caDir, ca)).rejects.toMatchObject({ code: 'EEXIST' });
    await writeDevCa(caDir, ca, { overwrite: true });
    expect((await stat(paths.key)).mode & 0o777).toBe(0o600);

    const leaf = await issueLeaf({ ca: await readDevCa(caDir), service: 'web', trustDomain: TD });
    const leafDir = join(dir, 'web');
    const lp = await writeLeaf(leafDir, 'web', leaf);
    expect(lp).toEqual(leafPaths(leafDir, 'web'));
    expect(lp.cert.endsWith('/web.pem')).toBe(true);
    expect(lp.key.endsWith('/web-key.pem')).toBe(true);
    expect((await stat(lp.key)).mode & 0o777).toBe(0o600);
    const next = await issueLeaf({ ca, service: 'web', trustDomain: TD });
    await writeLeaf(leafDir, 'web', next);
    expect(await readLeaf(leafDir, 'web')).toEqual({ certPem: next.certPem, keyPem: next.keyPem });
    expect((await stat(lp.key)).mode & 0o777).toBe(0o600);
  });

  it('names the missing file', async () => {
    await expect(readDevCa(join(dir, 'nope'))).rejects.toThrow(
      `${join(dir, 'nope', 'ca.pem')}: no such file`,
    );
    await writeFile(join(dir, 'ca.pem'), 'x');
    await expect(readDevCa(dir)).rejects.toThrow(`${join(dir, 'ca-key.pem')}: no such file`);
    expect(await readFile(join(dir, 'ca.pem'), 'utf8')).toBe('x');
  });
});

interface Side {
  readonly certPem?: string;
  readonly keyPem?: string;
  readonly caPem: string;
}

interface HandshakeResult {
  /** The identity the server read off the client's certificate, when the handshake succeeded there. */
  readonly identity?: WorkloadIdentity;
  /** What the client received (the server writes the identity as JSON). */
  readonly received: string;
  readonly serverError?: Error;
  readonly clientError?: Error;
  /** The serial number of the client's certificate as the server saw it. */
  readonly peerSerial?: string;
  /** Why the server would refuse the client (`socket.authorizationError`), seen with `rejectUnauthorized: false`. */
  readonly authorizationError?: string;
}

/** One real TLS 1.3 mTLS connection over 127.0.0.1; the server echoes the client's identity as JSON. */
async function handshake(
  server: Required<Side>,
  client: Side,
  rejectUnauthorized = true,
): Promise<HandshakeResult> {
  let identity: WorkloadIdentity | undefined;
  let serverError: Error | undefined;
  let authorizationError: string | undefined;
  let peerSerial: string | undefined;
  const srv = tls.createServer(
    {
      cert: server.certPem,
      key: server.keyPem,
      ca: server.caPem,
      requestCert: true,
      rejectUnauthorized,
      minVersion: 'TLSv1.3',
    },
    (socket) => {
      if (!socket.authorized) {
        authorizationError = String(socket.authorizationError);
        socket.destroy();
        return;
      }
      const peerCert = socket.getPeerCertificate();
      peerSerial = peerCert.serialNumber;
      identity = identityFromPeerCertificate(peerCert);
      socket.end(JSON.stringify(identity ?? null));
    },
  );
  srv.on('tlsClientError', (err) => {
    serverError = err;
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  try {
    const { received, clientError } = await new Promise<{ received: string; clientError?: Error }>(
      (resolve) => {
        let received = '';
        let clientError: Error | undefined;
        const socket = tls.connect({
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          ca: client.caPem,
          ...(client.certPem === undefined ? {} : { cert: client.certPem, key: client.keyPem }),
          minVersion: 'TLSv1.3',
        });
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => {
          received += d;
        });
        socket.on('error', (err) => {
          clientError = err;
        });
        socket.on('close', () =>
          resolve({ received, ...(clientError === undefined ? {} : { clientError }) }),
        );
        socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
      },
    );
    return { identity, received, serverError, clientError, authorizationError, peerSerial };
  } finally {
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
}

describe('mTLS with dev CA certificates (real TLS 1.3 over 127.0.0.1)', () => {
  let ca: DevCa;
  let server: IssuedLeaf;
  let client: IssuedLeaf;
  beforeAll(async () => {
    ca = await createDevCa({ trustDomain: TD });
    server = await issueLeaf({ ca, service: 'orders', trustDomain: TD });
    client = await issueLeaf({
      ca,
      service: 'web',
      trustDomain: TD,
      namespace: 'default',
      datacenter: 'dc1',
    });
  });
  const serverSide = () => ({ certPem: server.certPem, keyPem: server.keyPem, caPem: ca.certPem });

  it("succeeds, and the server reads the client's identity from its certificate", async () => {
    const r = await handshake(serverSide(), {
      certPem: client.certPem,
      keyPem: client.keyPem,
      caPem: ca.certPem,
    });
    expect(r.serverError).toBeUndefined();
    expect(r.clientError).toBeUndefined();
    expect(r.identity).toEqual({
      uri: 'spiffe://example.org/ns/default/dc/dc1/svc/web',
      trustDomain: TD,
      service: 'web',
      namespace: 'default',
      datacenter: 'dc1',
    });
    expect(JSON.parse(r.received).service).toBe('web');
    expect(r.peerSerial).toBe(client.serialNumber);
  });

  it.each([
    ['a look-alike CA (same name, other key)', TD, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    ['an unrelated CA', 'other.org', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
  ])('rejects a client certificate from %s', async (_what, otherTd, reason) => {
    const otherCa = await createDevCa({ trustDomain: otherTd });
    const intruder = await issueLeaf({ ca: otherCa, service: 'web', trustDomain: TD });
    const side = { certPem: intruder.certPem, keyPem: intruder.keyPem, caPem: ca.certPem };
    const r = await handshake(serverSide(), side);
    expect(r.identity).toBeUndefined();
    expect(r.received).toBe('');
    expect(r.serverError).toBeDefined();
    const why = await handshake(serverSide(), side, false);
    expect(why.authorizationError).toBe(reason);
    expect(why.identity).toBeUndefined();
  });

  it('rejects an expired client certificate', async () => {
    const now = Date.now();
    const expired = await issueLeaf({
      ca,
      service: 'web',
      trustDomain: TD,
      notAfter: new Date(now - 3_600_000),
    });
    expect(new X509Certificate(expired.certPem).validFromDate.getTime()).toBeLessThan(now - 3_600_000);
    const r = await handshake(serverSide(), {
      certPem: expired.certPem,
      keyPem: expired.keyPem,
      caPem: ca.certPem,
    });
    expect(r.identity).toBeUndefined();
    expect(r.received).toBe('');
    expect(r.serverError).toBeDefined();
    const why = await handshake(
      serverSide(),
      { certPem: expired.certPem, keyPem: expired.keyPem, caPem: ca.certPem },
      false,
    );
    expect(why.authorizationError).toBe('CERT_HAS_EXPIRED');
    expect(why.identity).toBeUndefined();
  });

  it('rejects a client without a certificate', async () => {
    const r = await handshake(serverSide(), { caPem: ca.certPem });
    expect(r.identity).toBeUndefined();
    expect(r.received).toBe('');
    expect(r.serverError).toBeDefined();
  });

  it('lets the client reject a server from another CA', async () => {
    const otherCa = await createDevCa({ trustDomain: TD });
    const r = await handshake(serverSide(), {
      certPem: client.certPem,
      keyPem: client.keyPem,
      caPem: otherCa.certPem,
    });
    expect(r.identity).toBeUndefined();
    expect(r.received).toBe('');
    expect(r.clientError?.message).toMatch(/issuer|certificate/i);
  });
});
