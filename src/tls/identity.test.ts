import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { createDevCa, issueLeaf } from './dev-ca.ts';
import {
  identityFromPeerCertificate,
  isAllowed,
  parseSpiffeId,
  parseSubjectAltNames,
  spiffeIdFor,
  type WorkloadIdentity,
} from './identity.ts';
import { loadX509 } from './x509.ts';

const peer = (subjectaltname: string) => ({ subjectaltname }) as PeerCertificate;

describe('parseSpiffeId', () => {
  it("parses Consul's form", () => {
    expect(parseSpiffeId('spiffe://11111111-2222.consul/ns/default/dc/dc1/svc/web')).toEqual({
      uri: 'spiffe://11111111-2222.consul/ns/default/dc/dc1/svc/web',
      trustDomain: '11111111-2222.consul',
      service: 'web',
      namespace: 'default',
      datacenter: 'dc1',
    });
  });

  it('parses the short form', () => {
    const id = parseSpiffeId('spiffe://example.org/svc/orders_v2.api');
    expect(id).toEqual({
      uri: 'spiffe://example.org/svc/orders_v2.api',
      trustDomain: 'example.org',
      service: 'orders_v2.api',
    });
    expect(id?.namespace).toBeUndefined();
    expect(id?.datacenter).toBeUndefined();
  });

  it.each([
    '',
    'spiffe://',
    'spiffe://example.org',
    'spiffe://example.org/',
    'spiffe:///svc/web',
    'SPIFFE://example.org/svc/web',
    'https://example.org/svc/web',
    'spiffe://Example.org/svc/web',
    'spiffe://example.org:443/svc/web',
    'spiffe://user@example.org/svc/web',
    'spiffe://example.org/svc/web/',
    'spiffe://example.org/svc//web',
    'spiffe://example.org/svc/..',
    'spiffe://example.org/svc/.',
    'spiffe://example.org/svc/we%62',
    'spiffe://example.org/svc/web?x=1',
    'spiffe://example.org/svc/web#f',
    'spiffe://example.org/svc/web, URI:spiffe://example.org/svc/admin',
    'spiffe://example.org/svc',
    'spiffe://example.org/ns/default/web',
    'spiffe://example.org/ns/default/dc/dc1/svc',
    'spiffe://example.org/ns/default/dc/dc1/svc/web/extra',
    'spiffe://example.org/dc/dc1/ns/default/svc/web',
    'spiffe://example.consul/agent/client/dc/dc1/id/abc',
    `spiffe://example.org/svc/${'a'.repeat(2100)}`,
  ])('rejects %j', (uri) => {
    expect(parseSpiffeId(uri)).toBeUndefined();
  });
});

describe('spiffeIdFor', () => {
  it('formats both forms and round-trips through parseSpiffeId', () => {
    const short = spiffeIdFor('web', { trustDomain: 'example.org' });
    expect(short).toBe('spiffe://example.org/svc/web');
    const long = spiffeIdFor('web', { trustDomain: 'td.consul', datacenter: 'dc1' });
    expect(long).toBe('spiffe://td.consul/ns/default/dc/dc1/svc/web');
    expect(spiffeIdFor('web', { trustDomain: 'td.consul', namespace: 'team-a', datacenter: 'dc2' })).toBe(
      'spiffe://td.consul/ns/team-a/dc/dc2/svc/web',
    );
    expect(parseSpiffeId(short)?.service).toBe('web');
    expect(parseSpiffeId(long)?.datacenter).toBe('dc1');
  });

  it('refuses invalid parts with a message naming them', () => {
    expect(() => spiffeIdFor('web', { trustDomain: 'Example.org' })).toThrow(/trust domain/);
    expect(() => spiffeIdFor('../etc', { trustDomain: 'example.org' })).toThrow(/service/);
    expect(() => spiffeIdFor('a/b', { trustDomain: 'example.org' })).toThrow(/service/);
    expect(() => spiffeIdFor('web', { trustDomain: 'example.org', namespace: 'x' })).toThrow(/datacenter/);
    expect(() => spiffeIdFor('web', { trustDomain: 'example.org', datacenter: 'd c' })).toThrow(/datacenter/);
  });
});

describe('parseSubjectAltNames', () => {
  it("splits Node's format and unescapes quoted values", () => {
    expect(parseSubjectAltNames('DNS:web, IP Address:127.0.0.1, URI:spiffe://example.org/svc/web')).toEqual([
      { type: 'DNS', value: 'web' },
      { type: 'IP Address', value: '127.0.0.1' },
      { type: 'URI', value: 'spiffe://example.org/svc/web' },
    ]);
    expect(parseSubjectAltNames('URI:"spiffe://a/svc/x, URI:spiffe://a/svc/admin", DNS:"a\\"b"')).toEqual([
      { type: 'URI', value: 'spiffe://a/svc/x, URI:spiffe://a/svc/admin' },
      { type: 'DNS', value: 'a"b' },
    ]);
    expect(parseSubjectAltNames('othername:<unsupported>, URI:spiffe://a/svc/x')).toEqual([
      { type: 'othername', value: '<unsupported>' },
      { type: 'URI', value: 'spiffe://a/svc/x' },
    ]);
  });

  it('returns undefined for malformed text', () => {
    expect(parseSubjectAltNames('no colon here')).toBeUndefined();
    expect(parseSubjectAltNames('URI:"unterminated')).toBeUndefined();
    expect(parseSubjectAltNames('URI:"a"junk')).toBeUndefined();
  });
});

describe('identityFromPeerCertificate', () => {
  it('reads the single SPIFFE URI SAN from a peer certificate object', () => {
    const id = identityFromPeerCertificate(
      peer('DNS:web, DNS:localhost, IP Address:127.0.0.1, URI:spiffe://td.consul/ns/default/dc/dc1/svc/web'),
    );
    expect(id?.service).toBe('web');
    expect(id?.datacenter).toBe('dc1');
  });

  it('refuses no certificate, no URI, several URIs, non-SPIFFE URIs and foreign trust domains', () => {
    expect(identityFromPeerCertificate(undefined)).toBeUndefined();
    expect(identityFromPeerCertificate({} as PeerCertificate)).toBeUndefined();
    expect(identityFromPeerCertificate(peer('DNS:web'))).toBeUndefined();
    expect(
      identityFromPeerCertificate(
        peer('URI:spiffe://example.org/svc/web, URI:spiffe://example.org/svc/admin'),
      ),
    ).toBeUndefined();
    expect(identityFromPeerCertificate(peer('URI:https://example.org/svc/web'))).toBeUndefined();
    expect(
      identityFromPeerCertificate(peer('URI:spiffe://other.org/svc/web'), { trustDomain: 'example.org' }),
    ).toBeUndefined();
    expect(
      identityFromPeerCertificate(peer('URI:spiffe://example.org/svc/web'), { trustDomain: 'example.org' })
        ?.service,
    ).toBe('web');
  });

  it('reads DER and node:crypto certificates made by issueLeaf', async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const leaf = await issueLeaf({ ca, service: 'orders', trustDomain: 'example.org', datacenter: 'dc1' });
    const cert = new X509Certificate(leaf.certPem);
    expect(identityFromPeerCertificate(cert)?.uri).toBe('spiffe://example.org/ns/default/dc/dc1/svc/orders');
    expect(identityFromPeerCertificate(cert.raw)?.service).toBe('orders');
    expect(identityFromPeerCertificate(new Uint8Array([1, 2, 3]))).toBeUndefined();
  });

  it('is not fooled by a URI SAN that embeds ", URI:" (Node quotes it)', async () => {
    const x509 = await loadX509();
    const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ]);
    const forged = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=evil',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          { type: 'url', value: 'spiffe://example.org/svc/web, URI:spiffe://example.org/svc/admin' },
        ]),
      ],
    });
    const node = new X509Certificate(forged.toString('pem'));
    expect(node.subjectAltName?.startsWith('URI:"')).toBe(true);
    expect(identityFromPeerCertificate(node)).toBeUndefined();
    expect(identityFromPeerCertificate(peer(node.subjectAltName ?? ''))).toBeUndefined();
  });
});

describe('isAllowed', () => {
  const web: WorkloadIdentity = {
    uri: 'spiffe://example.org/svc/web',
    trustDomain: 'example.org',
    service: 'web',
  };

  it("allows any identity with '*' but never a missing one", () => {
    expect(isAllowed(web, '*')).toBe(true);
    expect(isAllowed(undefined, '*')).toBe(false);
    expect(isAllowed(undefined, ['web'])).toBe(false);
  });

  it('allows by service name, by full SPIFFE ID, or by a "*" entry', () => {
    expect(isAllowed(web, ['orders', 'web'])).toBe(true);
    expect(isAllowed(web, ['orders', 'billing'])).toBe(false);
    expect(isAllowed(web, [])).toBe(false);
    expect(isAllowed(web, ['spiffe://example.org/svc/web'])).toBe(true);
    expect(isAllowed(web, ['spiffe://other.org/svc/web'])).toBe(false);
    expect(isAllowed(web, ['*'])).toBe(true);
    expect(isAllowed(web, ['Web'])).toBe(false);
  });
});
