// Config keys that name a secret kept outside the config (`secretEnv`, `secretFile`): each must be set, readable and not empty where meshlet runs.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors/config-error.ts';
import type { MeshletConfig } from './schema.ts';

/** One `secretEnv` key whose variable is unset or empty. */
export interface UnsetSecretEnv {
  /** Key path of the `secretEnv` key, e.g. `gateway.auth.users.secretEnv`. */
  readonly keyPath: string;
  /** The environment variable it names. */
  readonly variable: string;
}

/**
 * Every `secretEnv` key of `config` whose variable is unset or empty in `env`, in file order (today
 * `gateway.auth.NAME.secretEnv` of a `jwt` authenticator). Empty counts as unset, as the daemon
 * reads it: an empty HMAC secret is no secret.
 */
export function unsetSecretEnvs(
  config: Pick<MeshletConfig, 'gateway'>,
  env: NodeJS.ProcessEnv = process.env,
): UnsetSecretEnv[] {
  const found: UnsetSecretEnv[] = [];
  for (const [name, auth] of Object.entries(config.gateway?.auth ?? {})) {
    if (auth.type !== 'jwt' || auth.secretEnv === undefined) continue;
    const value = env[auth.secretEnv];
    if (value === undefined || value === '') {
      found.push({ keyPath: `gateway.auth.${name}.secretEnv`, variable: auth.secretEnv });
    }
  }
  return found;
}

/**
 * Throws one {@link ConfigError} naming every `secretEnv` whose variable is unset or empty, e.g.
 * `meshlet.yaml: gateway.auth.users.secretEnv: environment variable JWT_SECRET_KEY is unset or empty`
 * (several are joined with `; ` on the same line, each with its key path).
 */
export function checkSecretEnvs(
  config: Pick<MeshletConfig, 'gateway'>,
  file?: string,
  env: NodeJS.ProcessEnv = process.env,
): void {
  const unset = unsetSecretEnvs(config, env);
  if (unset.length === 0) return;
  const says = (u: UnsetSecretEnv) => `environment variable ${u.variable} is unset or empty`;
  const [first, ...rest] = unset;
  const problem = [says(first!), ...rest.map((u) => `${u.keyPath}: ${says(u)}`)].join('; ');
  throw new ConfigError(first!.keyPath, problem, file);
}

/** One `secretFile` key whose file cannot serve as a secret. */
export interface UnusableSecretFile {
  /** Key path of the `secretFile` key, e.g. `gateway.auth.users.secretFile`. */
  readonly keyPath: string;
  /** The path as configured. */
  readonly path: string;
  /** Why, e.g. `no such file`, `permission denied`, `is empty` (never the file's contents). */
  readonly problem: string;
}

/**
 * Every `secretFile` key of `config` (today `gateway.auth.NAME.secretFile` of a `jwt` authenticator)
 * whose file is missing, unreadable, or empty once a trailing newline is dropped, in file order. The
 * file is read as the daemon reads it (a relative path is resolved against the config file's
 * directory when the config is loaded); its contents are not kept.
 */
export function unusableSecretFiles(config: Pick<MeshletConfig, 'gateway'>): UnusableSecretFile[] {
  const found: UnusableSecretFile[] = [];
  for (const [name, auth] of Object.entries(config.gateway?.auth ?? {})) {
    if (auth.type !== 'jwt' || auth.secretFile === undefined) continue;
    const problem = secretFileProblem(auth.secretFile);
    if (problem !== undefined) {
      found.push({ keyPath: `gateway.auth.${name}.secretFile`, path: auth.secretFile, problem });
    }
  }
  return found;
}

/**
 * Reads `path` as UTF-8: its text, or why it cannot be read (`no such file`, `permission denied`,
 * `is a directory`, `cannot be read (CODE)`), in words for a config error.
 */
export function readConfiguredFile(path: string): { text: string } | { problem: string } {
  try {
    return { text: readFileSync(path, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { problem: 'no such file' };
    if (code === 'EACCES' || code === 'EPERM') return { problem: 'permission denied' };
    if (code === 'EISDIR') return { problem: 'is a directory' };
    return { problem: `cannot be read (${code ?? 'error'})` };
  }
}

function secretFileProblem(path: string): string | undefined {
  const read = readConfiguredFile(path);
  if ('problem' in read) return read.problem;
  return read.text.replace(/\r?\n$/, '') === '' ? 'is empty' : undefined;
}

/**
 * Throws one {@link ConfigError} naming every `secretFile` that cannot serve as a secret, e.g.
 * `meshlet.yaml: gateway.auth.users.secretFile: file ./jwt.secret: no such file` (several are
 * joined with `; ` on the same line, each with its key path); returns `config` otherwise. `run`
 * reads the file at start, so loading a config file (`config check`, `run`, a reload) refuses what
 * `run` would (exit 2). Called where a file is loaded, not by `validateConfig`, which checks an
 * object without touching the file system.
 */
export function checkSecretFiles<C extends Pick<MeshletConfig, 'gateway'>>(config: C, file?: string): C {
  const bad = unusableSecretFiles(config);
  if (bad.length === 0) return config;
  const says = (b: UnusableSecretFile) => `file ${b.path}: ${b.problem}`;
  const [first, ...rest] = bad;
  const problem = [says(first!), ...rest.map((b) => `${b.keyPath}: ${says(b)}`)].join('; ');
  throw new ConfigError(first!.keyPath, problem, file);
}
