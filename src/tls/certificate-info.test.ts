import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors/config-error.ts';
import {
  checkKeyMatchesCertificate,
  isIssuedBy,
  loadTlsFiles,
  msUntilExpiry,
  parseCertificateBundle,
  parseCertificatePem,
  parsePrivateKeyPem,
  splitPemCertificates,
  TlsFileError,
} from './certificate-info.ts';
import { createDevCa, type DevCa, type IssuedLeaf, issueLeaf } from './dev-ca.ts';

const TD = 'example.org';
let ca: DevCa;
let otherCa: DevCa;
let leaf: IssuedLeaf;
let dir: string;

beforeAll(async () => {
  ca = await createDevCa({ trustDomain: TD });
  otherCa = await createDevCa({ trustDomain: 'other.org' });
  leaf = await issueLeaf({ ca, service: 'web', trustDomain: TD, datacenter: 'dc1' });
  dir = await mkdtemp(join(tmpdir(), 'meshlet-cert-info-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('parseCertificatePem', () => {
  it('reads serial, validity, subject and SPIFFE identity', () => {
    const info = parseCertificatePem(leaf.certPem);
    expect(info.serialNumber).toBe(leaf.serialNumber);
    expect(info.notAfter).toEqual(leaf.notAfter);
    expect(info.notBefore.getTime()).toBeLessThan(Date.now());
    expect(info.subject).toBe('CN=web');
    expect(info.issuer).toBe(`CN=meshlet development CA\nO=${TD}`);
    expect(info.spiffeId).toBe('spiffe://example.org/ns/default/dc/dc1/svc/web');
    expect(info.identity?.service).toBe('web');
    expect(info.isCa).toBe(false);
    expect(info.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const caInfo = parseCertificatePem(ca.certPem);
    expect(caInfo.isCa).toBe(true);
    expect(caInfo.spiffeId).toBeUndefined();
  });

  it('names the input in its error', () => {
    expect(() => parseCertificatePem('hello', 'tls.cert: ./certs/web.pem')).toThrow(
      'tls.cert: ./certs/web.pem: not a PEM certificate',
    );
    const broken = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    expect(() => parseCertificatePem(broken, 'tls.cert: ./x.pem')).toThrow(
      'tls.cert: ./x.pem: not a PEM certificate',
    );
    expect(() => parseCertificatePem(leaf.keyPem, 'tls.cert: ./k.pem')).toThrow(TlsFileError);
  });

  it('parses every certificate of a bundle', () => {
    const bundle = `${ca.certPem}\n${otherCa.certPem}`;
    expect(splitPemCertificates(bundle)).toHaveLength(2);
    expect(parseCertificateBundle(bundle).map((i) => i.issuer)).toEqual([
      `CN=meshlet development CA\nO=${TD}`,
      'CN=meshlet development CA\nO=other.org',
    ]);
    expect(() => parseCertificateBundle('', 'tls.ca: ./ca.pem')).toThrow(
      'tls.ca: ./ca.pem: not a PEM certificate',
    );
  });

  it('tells the time left', () => {
    const info = parseCertificatePem(leaf.certPem);
    expect(msUntilExpiry(info, info.notAfter.getTime() - 5)).toBe(5);
    expect(msUntilExpiry(info, info.notAfter.getTime() + 5)).toBe(-5);
  });
});

describe('checkKeyMatchesCertificate and parsePrivateKeyPem', () => {
  it('accepts the matching key', () => {
    expect(() => checkKeyMatchesCertificate(leaf.certPem, leaf.keyPem)).not.toThrow();
  });

  it('refuses another key with a clear message', () => {
    expect(() => checkKeyMatchesCertificate(leaf.certPem, ca.keyPem)).toThrow(
      /^tls\.key does not match tls\.cert$/,
    );
    expect(() =>
      checkKeyMatchesCertificate(leaf.certPem, ca.keyPem, {
        certFile: './certs/web.pem',
        keyFile: './certs/web-key.pem',
      }),
    ).toThrow('tls.key does not match tls.cert (./certs/web-key.pem, ./certs/web.pem)');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    expect(() => checkKeyMatchesCertificate(leaf.certPem, rsa as string)).toThrow(
      'tls.key does not match tls.cert',
    );
  });

  it('refuses what is not a usable private key', () => {
    expect(() => parsePrivateKeyPem(leaf.certPem, 'tls.key: ./k.pem')).toThrow(
      'tls.key: ./k.pem: not a PEM private key',
    );
    expect(() =>
      parsePrivateKeyPem(
        '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
        'tls.key: ./k.pem',
      ),
    ).toThrow('tls.key: ./k.pem: not a PEM private key');
    const encrypted = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'secret',
    });
    expect(() => parsePrivateKeyPem(encrypted as string, 'tls.key: ./k.pem')).toThrow(
      'tls.key: ./k.pem: encrypted private keys are not supported',
    );
    expect(() => checkKeyMatchesCertificate('nope', leaf.keyPem, { certFile: './c.pem' })).toThrow(
      'tls.cert: ./c.pem: not a PEM certificate',
    );
  });
});

describe('isIssuedBy', () => {
  it('checks the signature against each CA of the bundle', () => {
    expect(isIssuedBy(leaf.certPem, ca.certPem)).toBe(true);
    expect(isIssuedBy(leaf.certPem, otherCa.certPem)).toBe(false);
    expect(isIssuedBy(leaf.certPem, `${otherCa.certPem}${ca.certPem}`)).toBe(true);
    expect(isIssuedBy('garbage', ca.certPem)).toBe(false);
  });

  it('refuses a look-alike CA with the same name but another key', async () => {
    const lookAlike = await createDevCa({ trustDomain: TD });
    expect(isIssuedBy(leaf.certPem, lookAlike.certPem)).toBe(false);
  });
});

describe('loadTlsFiles', () => {
  const write = async (name: string, text: string) => {
    const p = join(dir, name);
    await writeFile(p, text);
    return p;
  };

  it('returns the checked contents and facts', async () => {
    const paths = {
      cert: await write('web.pem', leaf.certPem),
      key: await write('web-key.pem', leaf.keyPem),
      ca: await write('ca.pem', `${otherCa.certPem}${ca.certPem}`),
    };
    const loaded = await loadTlsFiles(paths);
    expect(loaded.certPem).toBe(leaf.certPem);
    expect(loaded.keyPem).toBe(leaf.keyPem);
    expect(loaded.cert.serialNumber).toBe(leaf.serialNumber);
    expect(loaded.cert.identity?.service).toBe('web');
    expect(loaded.ca).toHaveLength(2);
  });

  it('names the key and file of what is wrong', async () => {
    const cert = await write('web.pem', leaf.certPem);
    const key = await write('web-key.pem', leaf.keyPem);
    const caPath = await write('ca.pem', ca.certPem);
    const missing = join(dir, 'missing.pem');
    await expect(loadTlsFiles({ cert: missing, key, ca: caPath })).rejects.toThrow(
      `tls.cert: ${missing}: no such file`,
    );
    const junk = await write('junk.pem', 'not a cert');
    await expect(loadTlsFiles({ cert: junk, key, ca: caPath })).rejects.toThrow(
      `tls.cert: ${junk}: not a PEM certificate`,
    );
    await expect(loadTlsFiles({ cert, key, ca: junk })).rejects.toThrow(
      `tls.ca: ${junk}: not a PEM certificate`,
    );
    await expect(loadTlsFiles({ cert, key: junk, ca: caPath })).rejects.toThrow(
      `tls.key: ${junk}: not a PEM private key`,
    );
    const wrongKey = await write('wrong-key.pem', ca.keyPem);
    await expect(loadTlsFiles({ cert, key: wrongKey, ca: caPath })).rejects.toThrow(
      `tls.key does not match tls.cert (${wrongKey}, ${cert})`,
    );
    const otherCaPath = await write('other-ca.pem', otherCa.certPem);
    const err = await loadTlsFiles({ cert, key, ca: otherCaPath }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TlsFileError);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as TlsFileError).keyPath).toBe('tls.cert');
    expect((err as Error).message).toBe(`tls.cert: ${cert}: not issued by tls.ca (${otherCaPath})`);
  });
});
