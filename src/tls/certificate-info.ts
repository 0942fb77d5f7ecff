// Certificate facts meshlet needs at runtime: parse PEM files, check key/cert/CA agree, with errors naming the file.
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ConfigError } from '../errors/config-error.ts';
import { identityFromPeerCertificate, type WorkloadIdentity } from './identity.ts';

/** What meshlet reads off a certificate (metrics, `/upstreams`, `meshlet certs`, rotation). */
export interface CertificateInfo {
  /** Serial number, uppercase hex, as node:tls reports it in `getPeerCertificate().serialNumber`. */
  readonly serialNumber: string;
  /** Start of validity. */
  readonly notBefore: Date;
  /** End of validity; export as the certificate expiry timestamp. */
  readonly notAfter: Date;
  /** Subject DN, one `KEY=value` per line as node:crypto prints it, e.g. `CN=web`. */
  readonly subject: string;
  /** Issuer DN, same format. */
  readonly issuer: string;
  /** The SPIFFE ID of the single URI SAN, when it is one of the accepted forms. */
  readonly spiffeId?: string;
  /** The identity that SPIFFE ID names. */
  readonly identity?: WorkloadIdentity;
  /** SHA-256 fingerprint, colon-separated uppercase hex. */
  readonly fingerprint256: string;
  /** Whether basicConstraints says CA. */
  readonly isCa: boolean;
}

/**
 * A TLS file that cannot be used: one line naming the config key and the file
 * (`tls.cert: ./certs/web.pem: not a PEM certificate`). A {@link ConfigError}: `meshlet certs`
 * exits 2 on it, and a reload keeps the old certificate. `meshlet run` reads the files when the
 * daemon starts, so there it is `meshlet: cannot start: tls.cert: …`, exit 1, like other material
 * meshlet cannot use at start (etcd credentials); `meshlet config check` reads them with the same
 * code and exits 2 (`checkConfigFiles`).
 */
export class TlsFileError extends ConfigError {
  constructor(keyPath: string, message: string) {
    super(keyPath, message);
    this.name = 'TlsFileError';
    this.message = message;
  }
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The PEM certificate blocks in `pem`, in order (a chain file or a CA bundle holds several). */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(PEM_CERT_RE) ?? [];
}

/**
 * Parses the first certificate in `pem`. `label` prefixes errors, e.g. `tls.cert: ./certs/web.pem`
 * gives `tls.cert: ./certs/web.pem: not a PEM certificate`. Throws {@link TlsFileError}.
 */
export function parseCertificatePem(pem: string, label = 'certificate'): CertificateInfo {
  const first = splitPemCertificates(pem)[0];
  if (first === undefined) throw new TlsFileError(keyPathOf(label), `${label}: not a PEM certificate`);
  return certificateInfo(toX509(first, label));
}

/** Parses every certificate in a PEM bundle (e.g. a CA file with old and new roots). Throws {@link TlsFileError} when there is none or one is bad. */
export function parseCertificateBundle(pem: string, label = 'CA bundle'): CertificateInfo[] {
  const blocks = splitPemCertificates(pem);
  if (blocks.length === 0) throw new TlsFileError(keyPathOf(label), `${label}: not a PEM certificate`);
  return blocks.map((b) => certificateInfo(toX509(b, label)));
}

/** The facts of a node:crypto certificate. */
export function certificateInfo(cert: X509Certificate): CertificateInfo {
  const identity = identityFromPeerCertificate(cert);
  return {
    serialNumber: cert.serialNumber,
    notBefore: cert.validFromDate,
    notAfter: cert.validToDate,
    subject: cert.subject,
    issuer: cert.issuer,
    ...(identity === undefined ? {} : { spiffeId: identity.uri, identity }),
    fingerprint256: cert.fingerprint256,
    isCa: cert.ca,
  };
}

/** Milliseconds until `info` expires (negative once expired), from `nowMs` (default `Date.now()`). */
export function msUntilExpiry(info: Pick<CertificateInfo, 'notAfter'>, nowMs = Date.now()): number {
  return info.notAfter.getTime() - nowMs;
}

/** What the key/cert errors call the two inputs; files, when known, are appended. */
export interface KeyCertLabels {
  /** Name of the certificate input. Default `tls.cert`. */
  readonly cert?: string;
  /** Name of the key input. Default `tls.key`. */
  readonly key?: string;
  /** Certificate file path, for messages. */
  readonly certFile?: string;
  /** Key file path, for messages. */
  readonly keyFile?: string;
}

/**
 * Parses a PEM private key (PKCS#8, SEC1 or PKCS#1; not encrypted). Throws {@link TlsFileError}
 * `<label>: not a PEM private key` or `<label>: encrypted private keys are not supported`.
 */
export function parsePrivateKeyPem(keyPem: string, label = 'tls.key'): KeyObject {
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyPem)) {
    throw new TlsFileError(keyPathOf(label), `${label}: not a PEM private key`);
  }
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(keyPem);
  try {
    if (!encrypted) return createPrivateKey(keyPem);
  } catch {
    // reported below
  }
  const problem = encrypted ? 'encrypted private keys are not supported' : 'not a PEM private key';
  throw new TlsFileError(keyPathOf(label), `${label}: ${problem}`);
}

/**
 * Checks that `keyPem` is the private key of the first certificate in `certPem`
 * (`X509Certificate.checkPrivateKey`). Throws {@link TlsFileError}: a parse error naming the input
 * and file, or `tls.key does not match tls.cert` (with the files in parentheses when given).
 */
export function checkKeyMatchesCertificate(
  certPem: string,
  keyPem: string,
  labels: KeyCertLabels = {},
): void {
  const certName = labels.cert ?? 'tls.cert';
  const keyName = labels.key ?? 'tls.key';
  const certLabel = labels.certFile === undefined ? certName : `${certName}: ${labels.certFile}`;
  const keyLabel = labels.keyFile === undefined ? keyName : `${keyName}: ${labels.keyFile}`;
  const first = splitPemCertificates(certPem)[0];
  if (first === undefined) throw new TlsFileError(certName, `${certLabel}: not a PEM certificate`);
  const cert = toX509(first, certLabel);
  const key = parsePrivateKeyPem(keyPem, keyLabel);
  let ok: boolean;
  try {
    ok = cert.checkPrivateKey(key);
  } catch {
    ok = false;
  }
  if (!ok) {
    const files =
      labels.keyFile !== undefined && labels.certFile !== undefined
        ? ` (${labels.keyFile}, ${labels.certFile})`
        : '';
    throw new TlsFileError(keyName, `${keyName} does not match ${certName}${files}`);
  }
}

/**
 * Whether the first certificate in `certPem` chains to a certificate in `caPem`: signed by one of
 * them directly, or through intermediates that follow it in `certPem`. Checks signatures and
 * issuer names only (not validity dates or key usage; the TLS handshake does those).
 */
export function isIssuedBy(certPem: string, caPem: string): boolean {
  let chain: X509Certificate[];
  let roots: X509Certificate[];
  try {
    chain = splitPemCertificates(certPem).map((p) => new X509Certificate(p));
    roots = splitPemCertificates(caPem).map((p) => new X509Certificate(p));
  } catch {
    return false;
  }
  let current = chain[0];
  const rest = chain.slice(1);
  // Each step moves to one of the file's own certificates, so the chain's length bounds the walk
  // (a fixed cap refused a longer chain that the handshake, like OpenSSL's depth of 100, accepts).
  for (let depth = 0; current !== undefined && depth <= rest.length; depth++) {
    const cur: X509Certificate = current;
    if (roots.some((r) => signedBy(cur, r))) return true;
    current = rest.find((c) => signedBy(cur, c));
  }
  return false;
}

function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** Paths of the files of `tls:` in the config (`source: files`). */
export interface TlsFilePaths {
  /** This instance's certificate (optionally followed by intermediates), PEM: `tls.cert`. */
  readonly cert: string;
  /** Its private key, PEM: `tls.key`. */
  readonly key: string;
  /** The trust bundle (one or more CA certificates), PEM: `tls.ca`. */
  readonly ca: string;
}

/** The checked contents of the TLS files, ready for `tls.createSecureContext({ cert, key, ca })`. */
export interface LoadedTlsFiles {
  /** `tls.cert` contents, PEM. */
  readonly certPem: string;
  /** `tls.key` contents, PEM. */
  readonly keyPem: string;
  /** `tls.ca` contents, PEM. */
  readonly caPem: string;
  /** Facts of this instance's certificate (serial, expiry, identity). */
  readonly cert: CertificateInfo;
  /** Facts of each CA certificate in the bundle. */
  readonly ca: readonly CertificateInfo[];
}

/**
 * Reads and checks the three TLS files: each exists and parses, the key matches the certificate,
 * the certificate chains to the CA bundle, and node:tls can build a secure context from them
 * ({@link checkTlsContext}). Expiry is not refused here (compare `cert.notAfter` yourself). The
 * files source (`meshlet run`, every reload) and `meshlet config check` load them with it. Throws
 * {@link TlsFileError} naming the key and file, e.g.
 * `tls.cert: ./certs/web.pem: not a PEM certificate`, `tls.key does not match tls.cert (…)`,
 * `tls.cert: ./certs/web.pem: not issued by tls.ca (./certs/ca.pem)`, or, for a chain file in the
 * wrong order, `tls.cert: ./certs/web.pem: certificate 2 of 2 is the one tls.key belongs to: …`;
 * and {@link UnusableTlsFilesError} for a set that fits together but TLS cannot use.
 */
export async function loadTlsFiles(paths: TlsFilePaths): Promise<LoadedTlsFiles> {
  const [certPem, keyPem, caPem] = await Promise.all([
    readLabeled('tls.cert', paths.cert),
    readLabeled('tls.key', paths.key),
    readLabeled('tls.ca', paths.ca),
  ]);
  const cert = parseCertificatePem(certPem, `tls.cert: ${paths.cert}`);
  const ca = parseCertificateBundle(caPem, `tls.ca: ${paths.ca}`);
  checkLeafFirst(certPem, keyPem, paths.cert);
  checkKeyMatchesCertificate(certPem, keyPem, { certFile: paths.cert, keyFile: paths.key });
  if (!isIssuedBy(certPem, caPem)) {
    throw new TlsFileError('tls.cert', `tls.cert: ${paths.cert}: not issued by tls.ca (${paths.ca})`);
  }
  checkTlsContext({ certPem, keyPem, caPem }, paths);
  return { certPem, keyPem, caPem, cert, ca };
}

/**
 * A certificate set whose files parse and fit together but that node:tls cannot build a secure
 * context from (a key OpenSSL refuses at its default security level, such as RSA-512). Waiting does
 * not make it usable, so the files source refuses it at once rather than retrying it as a set still
 * being written.
 */
export class UnusableTlsFilesError extends TlsFileError {
  constructor(keyPath: string, message: string) {
    super(keyPath, message);
    this.name = 'UnusableTlsFilesError';
  }
}

/** Key paths of the TLS files {@link checkTlsContext} names. Defaults `tls.cert`, `tls.key`, `tls.ca`. */
export interface TlsContextLabels {
  readonly cert?: string;
  readonly key?: string;
  readonly ca?: string;
}

/** The key paths {@link checkTlsContext} names for `listeners.gateway.tls` (config check and the gateway listener). */
export const GATEWAY_TLS_LABELS = {
  cert: 'listeners.gateway.tls.cert',
  key: 'listeners.gateway.tls.key',
} as const satisfies TlsContextLabels;

/** The key paths {@link checkTlsContext} names for `registry.etcd.tls` (config check and the etcd client). */
export const ETCD_TLS_LABELS = {
  ca: 'registry.etcd.tls.ca',
  cert: 'registry.etcd.tls.cert',
  key: 'registry.etcd.tls.key',
} as const satisfies TlsContextLabels;

/** The key paths {@link checkTlsContext} names for `registry.consul.tls` (config check and the Consul client). */
export const CONSUL_TLS_LABELS = {
  ca: 'registry.consul.tls.ca',
  cert: 'registry.consul.tls.cert',
  key: 'registry.consul.tls.key',
} as const satisfies TlsContextLabels;

/** The key paths {@link checkTlsContext} names for `registry.redis.tls` (config check and the Redis connection). */
export const REDIS_TLS_LABELS = {
  ca: 'registry.redis.tls.ca',
  cert: 'registry.redis.tls.cert',
  key: 'registry.redis.tls.key',
} as const satisfies TlsContextLabels;

/**
 * Builds the `tls.createSecureContext({ cert, key, ca })` a listener or client would build from
 * these PEMs, and throws {@link UnusableTlsFilesError} with OpenSSL's reason when it cannot, naming
 * the files: `tls.cert: ./certs/web.pem: TLS cannot use it with tls.key ./certs/web-key.pem and
 * tls.ca ./certs/ca.pem: error:0A00018F:SSL routines::ee key too small` (without `ca`, the CA part is
 * left out). `files` are the paths as shown; `labels` the key paths. Costs one context build
 * (about a millisecond): call it when files are loaded, never per connection.
 */
export function checkTlsContext(
  pem: { readonly certPem: string; readonly keyPem: string; readonly caPem?: string },
  files: { readonly cert: string; readonly key: string; readonly ca?: string },
  labels: TlsContextLabels = {},
): void {
  try {
    createSecureContext({ cert: pem.certPem, key: pem.keyPem, ca: pem.caPem });
  } catch (err) {
    const certName = labels.cert ?? 'tls.cert';
    const ca = files.ca === undefined ? '' : ` and ${labels.ca ?? 'tls.ca'} ${files.ca}`;
    throw new UnusableTlsFilesError(
      certName,
      `${certName}: ${files.cert}: TLS cannot use it with ${labels.key ?? 'tls.key'} ${files.key}${ca}: ` +
        (err as Error).message,
    );
  }
}

/**
 * A chain file whose first certificate is not the one the key belongs to, while a later one is (an
 * intermediate or the CA written first): refused with what to do, rather than as a key mismatch.
 */
function checkLeafFirst(certPem: string, keyPem: string, certFile: string): void {
  const blocks = splitPemCertificates(certPem);
  if (blocks.length < 2) return;
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    return; // checkKeyMatchesCertificate names the bad key
  }
  const matches = (pem: string): boolean => {
    try {
      return new X509Certificate(pem).checkPrivateKey(key);
    } catch {
      return false;
    }
  };
  if (matches(blocks[0]!)) return;
  const at = blocks.findIndex(matches);
  if (at > 0) {
    throw new TlsFileError(
      'tls.cert',
      `tls.cert: ${certFile}: certificate ${at + 1} of ${blocks.length} is the one tls.key belongs to: ` +
        "put this instance's certificate first, then its intermediates",
    );
  }
}

async function readLabeled(keyPath: string, path: string): Promise<string> {
  try {
    // node:fs's callback form: node:fs/promises would load readline and more with it (~0.5 MiB of RSS).
    return await new Promise<string>((resolve, reject) =>
      readFile(path, 'utf8', (err, text) => (err === null ? resolve(text) : reject(err))),
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const problem =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new TlsFileError(keyPath, `${keyPath}: ${path}: ${problem}`);
  }
}

function toX509(pem: string, label: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new TlsFileError(keyPathOf(label), `${label}: not a PEM certificate`);
  }
}

/** `tls.cert: ./x.pem` → `tls.cert`; a label without a colon is its own key path. */
function keyPathOf(label: string): string {
  const i = label.indexOf(': ');
  return i < 0 ? label : label.slice(0, i);
}
