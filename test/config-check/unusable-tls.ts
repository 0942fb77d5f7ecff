// Fixtures of the unusable-TLS config tests: an RSA-512 leaf OpenSSL refuses, OpenSSL's reason, and a directory holding a config with its files.
import { join } from 'node:path';
import { rsa512Leaf } from '../tls/openssl-certs.ts';
import { devPki, type DevPki, tempDir, writeFiles } from './cli.ts';

/** Listeners on free ports, without the gRPC admin API. */
export const LISTENERS = { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } };

/** OpenSSL's reason for an RSA-512 key at its default security level. */
export const KEY_TOO_SMALL = 'error:0A00018F:SSL routines::ee key too small';

/** A dev PKI and an RSA-512 leaf for `web` issued by its CA (it parses, fits and chains; OpenSSL refuses it). */
export async function weakLeaf(): Promise<{ pki: DevPki; weak: { certPem: string; keyPem: string } }> {
  const pki = await devPki();
  return { pki, weak: rsa512Leaf(tempDir(), pki.ca, 'web') };
}

/** A directory holding `meshlet.yaml` (`config`) and `files`. */
export function configDir(config: string, files: Record<string, string>): { dir: string; file: string } {
  const dir = tempDir();
  writeFiles(dir, { 'meshlet.yaml': config, ...files });
  return { dir, file: join(dir, 'meshlet.yaml') };
}
