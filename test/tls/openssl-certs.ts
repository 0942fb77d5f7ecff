// Odd certificates made with the openssl CLI for hostile TLS tests: RSA or EC keys, any extensions, CAs and chains.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const quiet = { stdio: 'ignore' as const };

/** A key and a certificate made with the openssl CLI: `ext` lines for the certificate, signed by `issuer` (self-signed without). */
export function opensslCert(
  dir: string,
  name: string,
  ext: string,
  issuer?: { cert: string; key: string },
  keyType: 'ec' | 'rsa' = 'ec',
): { cert: string; key: string; certPem: string; keyPem: string } {
  const cfg = join(dir, `${name}.cnf`);
  writeFileSync(cfg, `[req]\ndistinguished_name=dn\n[dn]\n[ext]\n${ext}\n`);
  const [key, csr, cert] = ['key', 'csr', 'pem'].map((x) => join(dir, `${name}.${x}`)) as [
    string,
    string,
    string,
  ];
  if (keyType === 'ec') {
    execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], quiet);
  } else {
    execFileSync('openssl', ['genrsa', '-out', key, '2048'], quiet);
  }
  execFileSync(
    'openssl',
    ['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', csr, '-config', cfg],
    quiet,
  );
  const signer =
    issuer === undefined ? ['-signkey', key] : ['-CA', issuer.cert, '-CAkey', issuer.key, '-set_serial', '9'];
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      csr,
      ...signer,
      '-days',
      '1',
      '-extfile',
      cfg,
      '-extensions',
      'ext',
      '-out',
      cert,
    ],
    quiet,
  );
  return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
}

/** Extensions of a CA certificate (no path length limit). */
export const CA_EXT = 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign';
/** Extensions of a mesh leaf for `service` with the extended key usage `eku`. */
export const leafExt = (service: string, eku = 'clientAuth,serverAuth') =>
  `subjectAltName=URI:spiffe://mesh.test/svc/${service}\nbasicConstraints=critical,CA:FALSE\n` +
  `keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=${eku}`;

/** A root CA and `depth` intermediates under it, each signing the next. */
export function opensslChain(
  dir: string,
  depth: number,
): {
  root: ReturnType<typeof opensslCert>;
  /** The last intermediate: it signs leaves. */
  issuer: ReturnType<typeof opensslCert>;
  /** The intermediates' PEM, nearest the leaf first, as a chain file lists them. */
  intermediatesPem: string;
} {
  const root = opensslCert(dir, 'chain-root', CA_EXT);
  let issuer = root;
  const intermediates: string[] = [];
  for (let i = 1; i <= depth; i++) {
    issuer = opensslCert(dir, `chain-int${i}`, CA_EXT, issuer);
    intermediates.unshift(issuer.certPem);
  }
  return { root, issuer, intermediatesPem: intermediates.join('') };
}

/**
 * A leaf for `service` (a `mesh.test` SPIFFE identity) signed by `ca` whose key is RSA-512, made in
 * `dir`: it parses, matches its certificate and chains to the CA, but OpenSSL refuses it at its
 * default security level (`ee key too small`). Serial 512 (`0200`).
 */
export function rsa512Leaf(
  dir: string,
  ca: { readonly certPem: string; readonly keyPem: string },
  service: string,
): { certPem: string; keyPem: string; serialNumber: string } {
  const [caCert, caKey, cfg, key, csr, cert] = [
    'rsa512-ca.pem',
    'rsa512-ca.key',
    `${service}-rsa512.cnf`,
    `${service}-rsa512.key`,
    `${service}-rsa512.csr`,
    `${service}-rsa512.pem`,
  ].map((f) => join(dir, f)) as [string, string, string, string, string, string];
  writeFileSync(caCert, ca.certPem);
  writeFileSync(caKey, ca.keyPem);
  writeFileSync(cfg, `[req]\ndistinguished_name=dn\n[dn]\n[ext]\n${leafExt(service)}\n`);
  execFileSync('openssl', ['genrsa', '-out', key, '512'], quiet);
  execFileSync(
    'openssl',
    ['req', '-new', '-key', key, '-subj', `/CN=${service}`, '-out', csr, '-config', cfg],
    quiet,
  );
  execFileSync(
    'openssl',
    ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', '512', '-days', '1'].concat([
      '-extfile',
      cfg,
      '-extensions',
      'ext',
      '-out',
      cert,
    ]),
    quiet,
  );
  return { certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8'), serialNumber: '0200' };
}
