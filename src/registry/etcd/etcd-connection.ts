// Builds the etcd3 client from `registry.etcd` (hosts, auth, TLS) and tells a credentials failure from an outage.
import { readFileSync } from 'node:fs';
import { noop } from 'cockatiel';
import { Etcd3, type IOptions } from 'etcd3';
import type { EtcdRegistryConfig } from '../../config/etcd-schema.ts';
import { ConfigError } from '../../errors/config-error.ts';
import { checkTlsContext, ETCD_TLS_LABELS } from '../../tls/certificate-info.ts';

type EtcdSettings = EtcdRegistryConfig['etcd'];

function readSecret(file: string, key: string): string {
  try {
    return readFileSync(file, 'utf8').trimEnd();
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

function readPem(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/**
 * The client options: every host, the password (or its file), TLS files. etcd3's own retry and
 * per-host circuit breaker are turned off: meshlet retries with its own backoff and must reach a
 * restarted member at once. Unreadable files are a ConfigError naming the key.
 */
export function etcdOptions(etcd: EtcdSettings): IOptions {
  const options: IOptions = {
    hosts: etcd.hosts.map((h) => h.replace(/\/$/, '')),
    dialTimeout: etcd.callTimeout,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + etcd.callTimeout }),
    faultHandling: { host: () => noop, global: noop },
  };
  if (etcd.auth !== undefined) {
    const password =
      etcd.auth.password ?? readSecret(etcd.auth.passwordFile!, 'registry.etcd.auth.passwordFile');
    options.auth = { username: etcd.auth.username, password };
  }
  if (etcd.tls !== undefined) {
    const { ca, cert, key } = etcd.tls;
    if ((cert === undefined) !== (key === undefined)) {
      throw new ConfigError('registry.etcd.tls', 'set cert and key together');
    }
    if (ca === undefined)
      throw new ConfigError('registry.etcd.tls.ca', 'required with tls (the CA of the members)');
    const rootCertificate = readPem(ca, ETCD_TLS_LABELS.ca);
    options.credentials = { rootCertificate };
    if (cert !== undefined && key !== undefined) {
      const certChain = readPem(cert, ETCD_TLS_LABELS.cert);
      const privateKey = readPem(key, ETCD_TLS_LABELS.key);
      // A set OpenSSL refuses (an RSA-512 key) stops start with the line `meshlet config check`
      // prints, naming the files, before gRPC builds its context from it.
      const pem = {
        certPem: certChain.toString(),
        keyPem: privateKey.toString(),
        caPem: rootCertificate.toString(),
      };
      checkTlsContext(pem, { cert, key, ca }, ETCD_TLS_LABELS);
      options.credentials = { rootCertificate, certChain, privateKey };
    }
    if (etcd.tls.serverName !== undefined) {
      options.grpcOptions = { 'grpc.ssl_target_name_override': etcd.tls.serverName };
    }
  }
  return options;
}

/** Creates the client. */
export function connectEtcd(etcd: EtcdSettings): Etcd3 {
  return new Etcd3(etcdOptions(etcd));
}

/**
 * The startup error for a call etcd refused for its credentials or permissions, naming the key;
 * undefined for anything else (an outage is retried, not fatal).
 */
export function credentialsError(err: unknown): ConfigError | undefined {
  const e = err as Error;
  const text = `${e.name} ${e.message}`;
  if (/EtcdAuthenticationFailed|authentication failed|invalid auth token/i.test(text)) {
    return new ConfigError('registry.etcd.auth', `etcd refused the credentials (${e.message})`);
  }
  if (/EtcdPermissionDenied|permission denied/i.test(text)) {
    return new ConfigError('registry.etcd.auth.username', `etcd denied access to the prefix (${e.message})`);
  }
  if (/user name is empty|Unauthenticated|user name not found/i.test(text)) {
    return new ConfigError('registry.etcd.auth', `etcd requires credentials (${e.message})`);
  }
  return undefined;
}
