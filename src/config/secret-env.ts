// Config keys that name a secret by environment variable (`secretEnv`): each variable must be set, and not empty, where meshlet runs.
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
