// Every file path a config names, resolved by one rule: a relative path is relative to the config file's directory.
import { resolve } from 'node:path';
import type { MeshletConfig } from './schema.ts';

/** One file path key of a config, with its value (already resolved once {@link resolveConfigPaths} ran). */
export interface ConfigPath {
  /** Key path, e.g. `tls.cert`, `gateway.auth.users.secretFile`. */
  readonly keyPath: string;
  /** The path. */
  readonly path: string;
}

/** A key holding a path: read and replace it in place. */
interface PathSlot {
  readonly keyPath: string;
  get(): string | undefined;
  set(path: string): void;
}

function slot<T extends object, K extends keyof T>(keyPath: string, owner: T, key: K): PathSlot {
  return {
    keyPath,
    get: () => owner[key] as string | undefined,
    set: (path) => {
      (owner as Record<K, unknown>)[key] = path;
    },
  };
}

/** Every path key of `config` that is set, in file order. */
function slots(config: MeshletConfig): PathSlot[] {
  const out: PathSlot[] = [];
  const gatewayTls = config.listeners.gateway?.tls;
  if (gatewayTls !== undefined) {
    out.push(slot('listeners.gateway.tls.cert', gatewayTls, 'cert'));
    out.push(slot('listeners.gateway.tls.key', gatewayTls, 'key'));
  }
  const registry = config.registry;
  if (registry.type === 'static') out.push(slot('registry.file', registry, 'file'));
  const clientTls = (prefix: string, tls: { ca?: string; cert?: string; key?: string } | undefined) => {
    if (tls === undefined) return;
    for (const k of ['ca', 'cert', 'key'] as const) out.push(slot(`${prefix}.${k}`, tls, k));
  };
  if (registry.type === 'consul') {
    out.push(slot('registry.consul.tokenFile', registry.consul, 'tokenFile'));
    clientTls('registry.consul.tls', registry.consul.tls);
  }
  if (registry.type === 'etcd') {
    if (registry.etcd.auth !== undefined) {
      out.push(slot('registry.etcd.auth.passwordFile', registry.etcd.auth, 'passwordFile'));
    }
    clientTls('registry.etcd.tls', registry.etcd.tls);
  }
  if (registry.type === 'redis') {
    out.push(slot('registry.redis.passwordFile', registry.redis, 'passwordFile'));
    clientTls('registry.redis.tls', registry.redis.tls);
  }
  if (config.tls?.source === 'files') {
    for (const k of ['cert', 'key', 'ca'] as const) out.push(slot(`tls.${k}`, config.tls, k));
  }
  for (const [name, auth] of Object.entries(config.gateway?.auth ?? {})) {
    if (auth.type === 'jwt') out.push(slot(`gateway.auth.${name}.secretFile`, auth, 'secretFile'));
    if (auth.type === 'apiKey') out.push(slot(`gateway.auth.${name}.file`, auth, 'file'));
  }
  return out.filter((s) => s.get() !== undefined);
}

/**
 * Resolves every file path key of `config` in place against `baseDir` (the config file's
 * directory when a file is loaded), so `run`, `config check` and a reload read the same files
 * wherever meshlet was started: `listeners.gateway.tls.cert|key`, `registry.file`,
 * `registry.consul.tokenFile`, `registry.{consul,etcd,redis}.tls.ca|cert|key`,
 * `registry.etcd.auth.passwordFile`, `registry.redis.passwordFile`, `tls.cert|key|ca`, and
 * `gateway.auth.NAME.secretFile` (jwt) and `gateway.auth.NAME.file` (apiKey). An absolute path stays.
 */
export function resolveConfigPaths(config: MeshletConfig, baseDir: string): void {
  for (const s of slots(config)) s.set(resolve(baseDir, s.get()!));
}

/** Every file path key of `config` that is set, with its value, in file order. */
export function configPaths(config: MeshletConfig): ConfigPath[] {
  return slots(config).map((s) => ({ keyPath: s.keyPath, path: s.get()! }));
}
