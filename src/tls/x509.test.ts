import { webcrypto } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { installReflectMetadata, loadX509 } from './x509.ts';

describe('loadX509', () => {
  it('loads @peculiar/x509 once, with a Reflect metadata polyfill and WebCrypto', async () => {
    const a = loadX509();
    const b = loadX509();
    expect(a).toBe(b);
    const x509 = await a;
    expect(x509.cryptoProvider.get()).toBe(webcrypto);
    const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ]);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=test',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    expect(cert.subject).toBe('CN=test');
  });
});

describe('installReflectMetadata', () => {
  it('is idempotent and finds metadata through the prototype chain', () => {
    installReflectMetadata();
    expect(installReflectMetadata()).toBe(false);
    const r = Reflect as unknown as {
      defineMetadata(k: unknown, v: unknown, t: object, p?: string): void;
      getMetadata(k: unknown, t: object, p?: string): unknown;
      getOwnMetadata(k: unknown, t: object, p?: string): unknown;
    };
    class Base {}
    class Derived extends Base {}
    r.defineMetadata('k', 1, Base);
    r.defineMetadata('k', 2, Base, 'm');
    expect(r.getOwnMetadata('k', Base)).toBe(1);
    expect(r.getOwnMetadata('k', Derived)).toBeUndefined();
    expect(r.getMetadata('k', Derived)).toBe(1);
    expect(r.getMetadata('k', Derived, 'm')).toBe(2);
    expect(r.getMetadata('other', Derived)).toBeUndefined();
  });
});
