// Outbound mTLS to a peer whose server certificate must not pass: each refusal is counted under its own reason, not all as wrong_identity.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CA_EXT, leafExt, opensslCert } from './openssl-certs.ts';
import { makePki, startOutbound, type TestOutbound, type TestPki, tempDir } from './tls-helpers.ts';

/** A TLS server presenting `cert`/`key` that answers 200 to anything (reached only if the handshake passes). */
async function peer(cert: { certPem: string; keyPem: string }): Promise<Server> {
  const server = createServer({ cert: cert.certPem, key: cert.keyPem, ALPNProtocols: ['http/1.1'] }, (s) => {
    s.on('error', () => undefined);
    s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

const portOf = (s: Server): number => (s.address() as { port: number }).port;

/** Outbound handshake failures by reason, from A's registry. */
async function failures(a: TestOutbound): Promise<Record<string, number>> {
  const m = await a.metrics.registry.getSingleMetric('meshlet_tls_handshakes_total')?.get();
  const out: Record<string, number> = {};
  for (const v of m?.values ?? []) {
    const l = v.labels as Record<string, string>;
    if (l.direction === 'outbound' && l.result === 'failed') out[l.reason!] = v.value;
  }
  return out;
}

/** Reasons whose count grew from `before` to `after`. */
function grown(before: Record<string, number>, after: Record<string, number>): string[] {
  return Object.keys(after).filter((k) => after[k]! > (before[k] ?? 0));
}

let pki: TestPki;
let a: TestOutbound;
const servers: Server[] = [];
/** Upstream name (the service A expects) → the peer serving it. */
const peers: Record<string, Server> = {};

beforeAll(async () => {
  pki = await makePki();
  const dir = tempDir();
  const caFiles = { cert: join(dir, 'ca.pem'), key: join(dir, 'ca.key') };
  writeFileSync(caFiles.cert, pki.ca.certPem);
  writeFileSync(caFiles.key, pki.ca.keyPem);
  // Every server certificate chains to A's trust bundle: only the identity check can refuse it.
  const certs = {
    // A DNS SAN only, no SPIFFE ID.
    nospiffe: opensslCert(
      dir,
      'nospiffe',
      'subjectAltName=DNS:nospiffe\nbasicConstraints=critical,CA:FALSE\n' +
        'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth',
      caFiles,
    ),
    // The right service name, in another trust domain.
    foreign: await pki.issue('foreign', { trustDomain: 'other.test' }),
    // The right SPIFFE ID on a CA certificate.
    caleaf: opensslCert(
      dir,
      'caleaf',
      `subjectAltName=URI:spiffe://mesh.test/svc/caleaf\n${CA_EXT}\nkeyUsage=critical,digitalSignature,keyCertSign`,
      caFiles,
    ),
    // A good SVID of another service.
    orders: opensslCert(dir, 'payments', leafExt('payments'), caFiles),
  };
  for (const [name, cert] of Object.entries(certs)) {
    peers[name] = await peer(cert);
    servers.push(peers[name]);
  }
  a = await startOutbound(
    pki,
    'web',
    Object.fromEntries(Object.entries(peers).map(([name, s]) => [name, [{ port: portOf(s) }]])),
  );
});

afterAll(async () => {
  await a?.close();
  for (const s of servers) await new Promise((r) => s.close(r));
});

async function via(upstream: string): Promise<number> {
  const res = await request(`${a.url}/x`, { headers: { host: upstream } });
  await res.body.text();
  return res.statusCode;
}

describe('outbound mTLS handshake failure reasons', () => {
  it.each([
    ['nospiffe', 'no_identity'],
    ['foreign', 'foreign_trust_domain'],
    ['caleaf', 'no_identity'],
    ['orders', 'wrong_identity'],
  ])('a peer for %s is refused and counted as %s', async (upstream, reason) => {
    const before = await failures(a);
    const status = await via(upstream);
    expect(status).toBeGreaterThanOrEqual(500);
    expect(grown(before, await failures(a))).toEqual([reason]);
  });
});
