// `meshlet config check`'s reading of the files a config names (TLS, endpoints, API keys, registry credentials), with the code `run` reads them with at start.
import { ConfigError } from '../errors/config-error.ts';
import { loadEndpointsFile } from './load-config.ts';
import type { MeshletConfig } from './schema.ts';
import { readConfiguredFile } from './secret-env.ts';
import { isoTime } from '../telemetry/utc-time.ts';

/** One file the config names that `run` could not use at start. */
export interface ConfigFileProblem {
  /** Key path of the key naming the file, e.g. `tls.cert`, `gateway.auth.keys.file`. */
  readonly keyPath: string;
  /** One line, starting with the key path, naming the file: `tls.cert: /etc/meshlet/web.pem: no such file`. */
  readonly line: string;
}

/** The line of an error thrown by `run`'s own loaders, prefixed with `keyPath` unless it starts with it. */
function lineOf(keyPath: string, err: unknown): string {
  const message = (err as Error).message;
  return message.startsWith(keyPath) ? message : `${keyPath}: ${message}`;
}

/**
 * Every file `config` names that `meshlet run` refuses at start, in file order, read as `run` reads
 * it (paths already resolved by `validateConfig`):
 * - `tls.cert|key|ca` (`source: files`): `loadTlsFiles`, as the files source loads them
 *   (readable, PEM, key matches certificate, chains to the CA bundle, node:tls can build a secure
 *   context from them), and the certificate not expired at `nowMs`;
 * - `listeners.gateway.tls.cert|key`: readable, PEM, the key the certificate's, usable by node:tls
 *   (`checkTlsContext`), not expired;
 * - `registry.file`: `loadEndpointsFile`, as the static registry loads it;
 * - `gateway.auth.NAME.file` (apiKey): readable and parsed by `parseApiKeys`;
 * - `registry.consul.tokenFile`, `registry.{consul,etcd,redis}.tls.ca|cert|key`,
 *   `registry.etcd.auth.passwordFile`, `registry.redis.passwordFile`: readable (run reads them
 *   whole and refuses to start when it cannot); and `registry.{consul,etcd,redis}.tls.ca|cert|key`
 *   usable by node:tls when a client certificate and key are set (`checkTlsContext`: each client
 *   checks its set when run creates it, so run stops on a set OpenSSL refuses rather than retrying
 *   a registry it can never reach).
 * `gateway.auth.NAME.secretFile` is checked with the secrets (`checkSecretFiles`).
 */
export async function configFileProblems(
  config: MeshletConfig,
  nowMs = Date.now(),
): Promise<ConfigFileProblem[]> {
  const problems: ConfigFileProblem[] = [];
  const add = (keyPath: string, line: string) => problems.push({ keyPath, line });
  const readable = (keyPath: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    const read = readConfiguredFile(path);
    if ('text' in read) return read.text;
    add(keyPath, `${keyPath}: ${path}: ${read.problem}`);
    return undefined;
  };
  /** Reads `PREFIX.ca|cert|key`; the texts of those that were read. */
  const clientTls = (prefix: string, tls: { ca?: string; cert?: string; key?: string } | undefined) => {
    const [ca, cert, key] = (['ca', 'cert', 'key'] as const).map((k) => readable(`${prefix}.${k}`, tls?.[k]));
    return { ca, cert, key };
  };
  const expired = (keyPath: string, path: string, notAfter: Date) => {
    if (notAfter.getTime() <= nowMs)
      add(keyPath, `${keyPath}: ${path}: expired at ${isoTime(notAfter.getTime())}`);
  };

  const gatewayTls = config.listeners.gateway?.tls;
  if (gatewayTls !== undefined) {
    const { GATEWAY_TLS_LABELS: labels, ...tlsInfo } = await import('../tls/certificate-info.ts');
    const certPem = readable(labels.cert, gatewayTls.cert);
    const keyPem = readable(labels.key, gatewayTls.key);
    if (certPem !== undefined && keyPem !== undefined) {
      const { checkKeyMatchesCertificate, checkTlsContext, parseCertificatePem } = tlsInfo;
      try {
        checkKeyMatchesCertificate(certPem, keyPem, {
          ...labels,
          certFile: gatewayTls.cert,
          keyFile: gatewayTls.key,
        });
        // The gateway listener builds its TLS server from this pair: one OpenSSL refuses stops run.
        checkTlsContext({ certPem, keyPem }, gatewayTls, labels);
        const cert = parseCertificatePem(certPem, `${labels.cert}: ${gatewayTls.cert}`);
        expired(labels.cert, gatewayTls.cert, cert.notAfter);
      } catch (err) {
        add(err instanceof ConfigError ? err.keyPath : labels.cert, (err as Error).message);
      }
    }
  }

  const registry = config.registry;
  if (registry.type === 'static' && registry.file !== undefined) {
    try {
      loadEndpointsFile(registry.file);
    } catch (err) {
      add('registry.file', lineOf('registry.file', err));
    }
  }
  /**
   * `prefix.ca|cert|key` readable, and, when a client certificate and key are set and read, a set
   * node:tls can build a context from (`checkTlsContext`): the Consul, etcd and Redis clients check
   * it the same way when run creates them, and stop start on a set OpenSSL refuses (an RSA-512 key).
   */
  const usableClientTls = async (
    prefix: string,
    tls: { ca?: string; cert?: string; key?: string } | undefined,
    labels: { readonly ca: string; readonly cert: string; readonly key: string },
  ) => {
    const pem = clientTls(prefix, tls);
    if (tls?.cert === undefined || tls.key === undefined || pem.cert === undefined || pem.key === undefined)
      return;
    const { checkTlsContext } = await import('../tls/certificate-info.ts');
    const files = { cert: tls.cert, key: tls.key, ca: pem.ca === undefined ? undefined : tls.ca };
    try {
      checkTlsContext({ certPem: pem.cert, keyPem: pem.key, caPem: pem.ca }, files, labels);
    } catch (err) {
      add(labels.cert, (err as Error).message);
    }
  };
  if (registry.type === 'consul') {
    readable('registry.consul.tokenFile', registry.consul.tokenFile);
    const { CONSUL_TLS_LABELS } = await import('../tls/certificate-info.ts');
    await usableClientTls('registry.consul.tls', registry.consul.tls, CONSUL_TLS_LABELS);
  }
  if (registry.type === 'etcd') {
    readable('registry.etcd.auth.passwordFile', registry.etcd.auth?.passwordFile);
    // The etcd client builds its gRPC TLS context from these when it is created: a set OpenSSL
    // refuses (an RSA-512 key, a key that is no PEM) stops run at start.
    const { ETCD_TLS_LABELS } = await import('../tls/certificate-info.ts');
    await usableClientTls('registry.etcd.tls', registry.etcd.tls, ETCD_TLS_LABELS);
  }
  if (registry.type === 'redis') {
    readable('registry.redis.passwordFile', registry.redis.passwordFile);
    const { REDIS_TLS_LABELS } = await import('../tls/certificate-info.ts');
    await usableClientTls('registry.redis.tls', registry.redis.tls, REDIS_TLS_LABELS);
  }

  const tls = config.tls;
  if (tls?.source === 'files') {
    const { loadTlsFiles } = await import('../tls/certificate-info.ts');
    const paths = { cert: tls.cert!, key: tls.key!, ca: tls.ca! };
    try {
      const loaded = await loadTlsFiles(paths);
      expired('tls.cert', paths.cert, loaded.cert.notAfter);
    } catch (err) {
      add(err instanceof ConfigError ? err.keyPath : 'tls', (err as Error).message);
    }
  }

  for (const [name, auth] of Object.entries(config.gateway?.auth ?? {})) {
    if (auth.type !== 'apiKey') continue;
    const keyPath = `gateway.auth.${name}.file`;
    const text = readable(keyPath, auth.file);
    if (text === undefined) continue;
    const { parseApiKeys } = await import('../gateway/api-key-authenticator.ts');
    try {
      parseApiKeys(text, auth.file);
    } catch (err) {
      add(keyPath, lineOf(keyPath, err));
    }
  }
  return problems;
}

/**
 * Throws one {@link ConfigError} naming every problem {@link configFileProblems} finds, e.g.
 * `meshlet.yaml: tls.cert: /etc/meshlet/certs/web.pem: no such file` (several are joined with `; `
 * on the same line, each starting with its key path): `meshlet config check` exits 2 with it.
 */
export async function checkConfigFiles(config: MeshletConfig, file?: string, nowMs?: number): Promise<void> {
  const problems = await configFileProblems(config, nowMs);
  if (problems.length === 0) return;
  const err = new ConfigError(problems[0]!.keyPath, '', file);
  err.message = `${file ?? 'config'}: ${problems.map((p) => p.line).join('; ')}`;
  throw err;
}
