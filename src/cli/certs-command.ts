// `meshlet certs init|issue`: development CA and SPIFFE leaf certificates on disk (dev tooling, not a production CA).
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { createDevCa, issueLeaf, readDevCa, writeDevCa, writeLeaf } from '../tls/dev-ca.ts';
import { isValidPathSegment, isValidTrustDomain } from '../tls/identity.ts';
import { EXIT } from './exit-codes.ts';
import { isoTime } from '../telemetry/utc-time.ts';

/** A bad argument: the CLI prints it and exits 2. */
export class CertsUsageError extends Error {
  override name = 'CertsUsageError';
}

/** Options of `meshlet certs init`. */
export interface CertsInitOptions {
  /** SPIFFE trust domain, e.g. `mesh.local`. */
  trustDomain: string;
  /** Directory for `ca.pem` and `ca-key.pem`; created (0700) when missing. */
  out: string;
  /** Validity in days. Default 3650. */
  days?: number;
  /** Replace an existing CA. Default false. */
  force?: boolean;
}

/** Creates a development CA in `out`. Returns the exit code; prints the files written. */
export async function certsInit(options: CertsInitOptions): Promise<number> {
  if (!isValidTrustDomain(options.trustDomain)) {
    throw new CertsUsageError(
      `--trust-domain ${JSON.stringify(options.trustDomain)}: use lowercase a-z 0-9 . - _`,
    );
  }
  const ca = await createDevCa({ trustDomain: options.trustDomain, validityDays: options.days ?? 3650 });
  let paths: { cert: string; key: string };
  try {
    paths = await writeDevCa(options.out, ca, { overwrite: options.force ?? false });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new CertsUsageError(`${join(options.out, 'ca.pem')} exists; pass --force to replace the CA`);
    }
    throw err;
  }
  process.stdout.write(
    `development CA for trust domain ${options.trustDomain}\n  certificate (tls.ca): ${paths.cert}\n  key (keep secret):    ${paths.key}\n`,
  );
  return EXIT.ok;
}

/** Options of `meshlet certs issue`. */
export interface CertsIssueOptions {
  /** Service name: the SPIFFE ID's last segment. */
  service: string;
  /** Directory holding the CA (`ca.pem`, `ca-key.pem`). */
  ca: string;
  /** Directory for `<service>.pem` and `<service>-key.pem`. */
  out: string;
  /** Trust domain; default the one in the CA's URI SAN. */
  trustDomain?: string | undefined;
  /** Consul datacenter: gives Consul's `/ns/default/dc/<dc>/svc/<service>` form. */
  datacenter?: string | undefined;
  /** Validity in hours. Default 72. */
  hours?: number;
  /** DNS SANs. Default `[service, localhost]`. */
  dns?: string[] | undefined;
  /** IP SANs. Default `[127.0.0.1]`. */
  ip?: string[] | undefined;
}

/** Issues a leaf for a service, signed by the CA in `ca`, into `out` (replacing files atomically, key first). */
export async function certsIssue(options: CertsIssueOptions): Promise<number> {
  if (!isValidPathSegment(options.service)) {
    throw new CertsUsageError(`--service ${JSON.stringify(options.service)}: use A-Z a-z 0-9 . - _`);
  }
  const ca = await readDevCa(options.ca);
  const trustDomain = options.trustDomain ?? trustDomainOf(ca.certPem);
  if (trustDomain === undefined || !isValidTrustDomain(trustDomain)) {
    throw new CertsUsageError('--trust-domain is needed: the CA names none');
  }
  const leaf = await issueLeaf({
    ca,
    service: options.service,
    trustDomain,
    ...(options.datacenter === undefined ? {} : { datacenter: options.datacenter }),
    validityHours: options.hours ?? 72,
    ...(options.dns === undefined || options.dns.length === 0 ? {} : { dnsNames: options.dns }),
    ...(options.ip === undefined || options.ip.length === 0 ? {} : { ipAddresses: options.ip }),
  });
  const paths = await writeLeaf(options.out, options.service, leaf);
  process.stdout.write(
    `${leaf.spiffeId}\n  certificate (tls.cert): ${paths.cert}\n  key (tls.key):          ${paths.key}\n` +
      `  serial ${leaf.serialNumber}, valid until ${isoTime(leaf.notAfter.getTime())}\n`,
  );
  return EXIT.ok;
}

/** The trust domain in a dev CA's `spiffe://<td>` URI SAN. */
function trustDomainOf(certPem: string): string | undefined {
  const san = new X509Certificate(certPem).subjectAltName ?? '';
  const m = /URI:spiffe:\/\/([^/,\s]+)/.exec(san);
  return m?.[1];
}
