// Development CA tooling: make a CA and issue SPIFFE leaf certificates (EC P-256) for local meshes and tests.
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkKeyMatchesCertificate } from './certificate-info.ts';
import { isValidPathSegment, isValidTrustDomain, spiffeIdFor } from './identity.ts';
import { loadX509 } from './x509.ts';

const subtle = webcrypto.subtle;
const EC_KEY_GEN = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** How far a default `notBefore` is set back from now, in ms, so small clock skew between hosts is harmless. */
const BACKDATE_MS = 60_000;

/** A CA certificate and its private key, both PEM (the key PKCS#8, unencrypted). */
export interface DevCa {
  /** The CA certificate, PEM. This is the trust bundle peers use (`tls.ca`). */
  readonly certPem: string;
  /** The CA's private key, PKCS#8 PEM. Keep it secret; only `issueLeaf` needs it. */
  readonly keyPem: string;
}

/** Options of {@link createDevCa}. */
export interface CreateDevCaOptions {
  /** SPIFFE trust domain the CA stands for, e.g. `example.org`; put in the CA's URI SAN `spiffe://<td>`. */
  readonly trustDomain: string;
  /** Validity in days from now. Default 3650 (ten years). */
  readonly validityDays?: number;
}

/**
 * Creates a self-signed development CA: EC P-256 key, ECDSA-SHA256 signature, subject
 * `CN=meshlet development CA, O=<trust domain>`, basicConstraints CA (critical, path length 0),
 * keyUsage keyCertSign + cRLSign (critical), URI SAN `spiffe://<trust domain>`, a subject key
 * identifier. Valid from one minute ago for `validityDays`. Not for production use.
 */
export async function createDevCa(options: CreateDevCaOptions): Promise<DevCa> {
  const { trustDomain, validityDays = 3650 } = options;
  if (!isValidTrustDomain(trustDomain)) {
    throw new RangeError(
      `invalid SPIFFE trust domain ${JSON.stringify(trustDomain)}: use lowercase a-z 0-9 . - _`,
    );
  }
  if (!(validityDays > 0)) throw new RangeError(`validityDays must be positive, got ${validityDays}`);
  const x509 = await loadX509();
  const keys = await subtle.generateKey(EC_KEY_GEN, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=meshlet development CA, O=${trustDomain}`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + validityDays * DAY_MS),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: exportPkcs8Pem(keys.privateKey) };
}

/** Options of {@link issueLeaf}. */
export interface IssueLeafOptions {
  /** The CA that signs the leaf (from {@link createDevCa} or {@link readDevCa}); its key must be EC P-256 or P-384. */
  readonly ca: DevCa;
  /** Service name: the SPIFFE ID's last segment, the subject CN and the default DNS name. */
  readonly service: string;
  /** SPIFFE trust domain, e.g. `example.org`. */
  readonly trustDomain: string;
  /** Consul namespace; see {@link spiffeIdFor}. Needs `datacenter`. */
  readonly namespace?: string;
  /** Consul datacenter; with it the SPIFFE ID takes Consul's `/ns/<ns>/dc/<dc>/svc/<service>` form. */
  readonly datacenter?: string;
  /** DNS SANs. Default `[service, 'localhost']`. */
  readonly dnsNames?: readonly string[];
  /** IP SANs. Default `['127.0.0.1']`. */
  readonly ipAddresses?: readonly string[];
  /** Validity in hours, counted from `notBefore` when given, else from now. Default 72 (Consul's leaf default). Ignored when `notAfter` is set. */
  readonly validityHours?: number;
  /** Start of validity. Default one minute ago (clock skew), or `validityHours` before `notAfter` when that is earlier. */
  readonly notBefore?: Date;
  /** End of validity; a past date makes an expired certificate (for tests). Default from `validityHours`. */
  readonly notAfter?: Date;
  /** Serial number, hex. Default 16 random bytes (positive). */
  readonly serialNumber?: string;
}

/** A leaf certificate issued by {@link issueLeaf}. */
export interface IssuedLeaf {
  /** The leaf certificate, PEM (the leaf only; the dev CA has no intermediates). */
  readonly certPem: string;
  /** The leaf's private key, PKCS#8 PEM, usable as node:tls `key`. */
  readonly keyPem: string;
  /** Serial number as uppercase hex, the same string node:tls reports as `getPeerCertificate().serialNumber`. */
  readonly serialNumber: string;
  /** The SPIFFE ID in the URI SAN. */
  readonly spiffeId: string;
  /** End of validity (second precision, as X.509 stores it). */
  readonly notAfter: Date;
}

/**
 * Issues a leaf certificate for `service`, signed by `ca`: EC P-256 key, subject `CN=<service>`,
 * URI SAN the SPIFFE ID ({@link spiffeIdFor}), DNS and IP SANs, basicConstraints not-CA,
 * keyUsage digitalSignature + keyEncipherment (critical), extKeyUsage serverAuth + clientAuth,
 * subject and authority key identifiers. Good for both sides of meshlet's mTLS. Throws when the CA
 * key does not match the CA certificate or a name is not valid.
 */
export async function issueLeaf(options: IssueLeafOptions): Promise<IssuedLeaf> {
  const { ca, service, trustDomain, namespace, datacenter } = options;
  const spiffeId = spiffeIdFor(service, { trustDomain, namespace, datacenter });
  const dnsNames = options.dnsNames ?? [service, 'localhost'];
  const ipAddresses = options.ipAddresses ?? ['127.0.0.1'];
  const validityHours = options.validityHours ?? 72;
  if (options.notAfter === undefined && !(validityHours > 0)) {
    throw new RangeError(`validityHours must be positive, got ${validityHours}`);
  }
  const now = Date.now();
  const notAfter =
    options.notAfter ?? new Date((options.notBefore?.getTime() ?? now) + validityHours * HOUR_MS);
  // With only a past `notAfter` (an expired certificate for tests), start `validityHours` before it.
  const notBefore =
    options.notBefore ??
    new Date(
      Math.min(now - BACKDATE_MS, notAfter.getTime() - (validityHours > 0 ? validityHours : 1) * HOUR_MS),
    );
  if (notAfter.getTime() <= notBefore.getTime())
    throw new RangeError('notAfter must be later than notBefore');
  const serialNumber = options.serialNumber ?? randomSerial();
  if (!/^[0-9a-fA-F]+$/.test(serialNumber))
    throw new RangeError(`serialNumber must be hex, got ${serialNumber}`);

  checkKeyMatchesCertificate(ca.certPem, ca.keyPem, { cert: 'CA certificate', key: 'CA key' });
  const x509 = await loadX509();
  const caCert = new x509.X509Certificate(ca.certPem);
  const { key: caKey, hash } = importSigningKey(ca.keyPem);
  const keys = await subtle.generateKey(EC_KEY_GEN, true, ['sign', 'verify']);
  const sans: { type: 'url' | 'dns' | 'ip'; value: string }[] = [
    { type: 'url', value: spiffeId },
    ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: `CN=${service}`,
    issuer: caCert.subjectName,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: { name: 'ECDSA', hash },
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  const certPem = cert.toString('pem');
  const parsed = new X509Certificate(certPem);
  return {
    certPem,
    keyPem: exportPkcs8Pem(keys.privateKey),
    serialNumber: parsed.serialNumber,
    spiffeId,
    notAfter: parsed.validToDate,
  };
}

/** Paths of a dev CA's files in `dir`: `ca.pem` and `ca-key.pem`. */
export function devCaPaths(dir: string): { readonly cert: string; readonly key: string } {
  return { cert: join(dir, 'ca.pem'), key: join(dir, 'ca-key.pem') };
}

/** Paths of a leaf's files in `dir`: `<service>.pem` and `<service>-key.pem`. Throws on an invalid service name. */
export function leafPaths(dir: string, service: string): { readonly cert: string; readonly key: string } {
  if (!isValidPathSegment(service)) throw new RangeError(`invalid service name ${JSON.stringify(service)}`);
  return { cert: join(dir, `${service}.pem`), key: join(dir, `${service}-key.pem`) };
}

/** Options of the write helpers. */
export interface WriteOptions {
  /** Replace existing files. Default false for {@link writeDevCa} (a CA is not overwritten by accident), true for {@link writeLeaf} (rotation). */
  readonly overwrite?: boolean;
}

/**
 * Writes `ca.pem` (mode 0644) and `ca-key.pem` (mode 0600) into `dir`, creating it (mode 0700 when
 * new). Refuses (EEXIST) to replace existing files unless `overwrite`. Returns the paths written.
 */
export async function writeDevCa(
  dir: string,
  ca: DevCa,
  options: WriteOptions = {},
): Promise<{ readonly cert: string; readonly key: string }> {
  const paths = devCaPaths(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const overwrite = options.overwrite ?? false;
  await writeFileAtomic(paths.key, ca.keyPem, 0o600, overwrite);
  await writeFileAtomic(paths.cert, ca.certPem, 0o644, overwrite);
  return paths;
}

/** Reads `ca.pem` and `ca-key.pem` from `dir`. Errors name the missing or unreadable file. */
export async function readDevCa(dir: string): Promise<DevCa> {
  const paths = devCaPaths(dir);
  return { certPem: await readNamed(paths.cert), keyPem: await readNamed(paths.key) };
}

/**
 * Writes `<service>.pem` (0644) and `<service>-key.pem` (0600) into `dir`, creating it (default mode). Each file is
 * replaced atomically (temp file + rename) so a watcher never reads half a file; the key is written
 * first, so a reader may briefly see the new key with the old certificate and should retry on a
 * mismatch. Returns the paths written.
 */
export async function writeLeaf(
  dir: string,
  service: string,
  leaf: { readonly certPem: string; readonly keyPem: string },
  options: WriteOptions = {},
): Promise<{ readonly cert: string; readonly key: string }> {
  const paths = leafPaths(dir, service);
  await mkdir(dir, { recursive: true });
  const overwrite = options.overwrite ?? true;
  await writeFileAtomic(paths.key, leaf.keyPem, 0o600, overwrite);
  await writeFileAtomic(paths.cert, leaf.certPem, 0o644, overwrite);
  return paths;
}

/** Reads `<service>.pem` and `<service>-key.pem` from `dir`. Errors name the missing or unreadable file. */
export async function readLeaf(dir: string, service: string): Promise<{ certPem: string; keyPem: string }> {
  const paths = leafPaths(dir, service);
  return { certPem: await readNamed(paths.cert), keyPem: await readNamed(paths.key) };
}

async function readNamed(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`, {
      cause: err,
    });
  }
}

async function writeFileAtomic(path: string, data: string, mode: number, overwrite: boolean): Promise<void> {
  if (!overwrite) {
    await writeFile(path, data, { mode, flag: 'wx' });
    await chmod(path, mode);
    return;
  }
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { mode, flag: 'wx' });
    await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** 16 random bytes as hex with the top bit clear, so the DER INTEGER is positive and keeps 16 bytes. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

function exportPkcs8Pem(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** Imports a PEM private key (PKCS#8 or SEC1) for ECDSA signing; EC P-256 (SHA-256) or P-384 (SHA-384). */
function importSigningKey(keyPem: string): { key: webcrypto.CryptoKey; hash: 'SHA-256' | 'SHA-384' } {
  const keyObject = createPrivateKey(keyPem);
  const curve = keyObject.asymmetricKeyDetails?.namedCurve;
  if (keyObject.asymmetricKeyType !== 'ec' || (curve !== 'prime256v1' && curve !== 'secp384r1')) {
    throw new Error(
      `CA key: unsupported key type ${keyObject.asymmetricKeyType} ${curve ?? ''}; need EC P-256 or P-384`,
    );
  }
  const p256 = curve === 'prime256v1';
  const key = keyObject.toCryptoKey({ name: 'ECDSA', namedCurve: p256 ? 'P-256' : 'P-384' }, false, ['sign']);
  return { key, hash: p256 ? 'SHA-256' : 'SHA-384' };
}
