// `GET /config` and gRPC GetConfig: the running config as JSON with every secret redacted.
import { resolve } from 'node:path';
import { isoTime } from '../telemetry/utc-time.ts';

/** What a redacted value reads as. */
export const REDACTED = '[redacted]';

/**
 * Keys whose values are secrets wherever they appear: `token` (the admin token, Consul's ACL
 * token), passwords, secrets, API keys, private keys given inline, authorization headers. Paths
 * (`tokenFile`, `tls.key`) stay: they are not secrets, and the files' contents are never read here.
 */
const SECRET_KEY =
  /^(token|password|passwd|secret|apiKey|apiKeys|privateKey|authorization|credentials?)$|Token$|Secret$|Password$/i;

/** A PEM block with a private key, wherever it appears as a value. */
const PEM_PRIVATE = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/**
 * A URL's userinfo (`redis://user:password@host`, `http://user:password@consul:8500`): the scheme,
 * the user, and the password, which is replaced. A userinfo without `:` is kept (a user name alone).
 */
const URL_PASSWORD = /^([a-z][a-z0-9+.-]*:\/\/[^/?#@:\s]*):([^/?#@\s]*)@/i;

/**
 * Request headers that carry credentials: a header matcher on one of them (`match.headers` of a
 * route, `{name: authorization, exact: "Bearer …"}`) has its value redacted.
 */
const CREDENTIAL_HEADER = /^(authorization|proxy-authorization|cookie|x-api-key|x-auth-token|api-key)$/i;

/** `value` with the password of a URL's userinfo replaced by {@link REDACTED}, or undefined when it has none. */
function withoutUrlPassword(value: string): string | undefined {
  const m = URL_PASSWORD.exec(value);
  if (m === null || m[2] === '') return undefined;
  return `${m[1]}:${REDACTED}@${value.slice(m[0].length)}`;
}

/**
 * A deep copy of `value` with the password of every URL in it replaced (`registry.status()` shows
 * the addresses it dials, as the config names them).
 */
export function redactUrlCredentials(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => redactUrlCredentials(v));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactUrlCredentials(v)]));
  }
  return typeof value === 'string' ? (withoutUrlPassword(value) ?? value) : value;
}

/** The outcome of the last config reload. */
export interface ReloadOutcome {
  /** `ok`, `partial` (some keys need a restart) or `failed` (the new file was refused). */
  result: 'ok' | 'partial' | 'failed';
  /** When, ISO 8601. */
  at: string;
  /** Keys that need a restart (partial). */
  notApplied?: string[];
  /** Why the file was refused (failed). */
  reason?: string;
}

/** The `GET /config` document. */
export interface ConfigDocument {
  /** The config file meshlet runs on (absolute), or null (started from code). */
  file: string | null;
  /** When the running config was loaded (start or last applied reload), ISO 8601. */
  loadedAt: string;
  /** The last reload's outcome, or null when there was none. */
  lastReload: ReloadOutcome | null;
  /** Paths of the values replaced by `[redacted]`, e.g. `listeners.admin.token`. */
  redacted: string[];
  /** The running config, defaults filled in, durations in milliseconds. */
  config: unknown;
}

/**
 * A deep copy of `value` with secrets replaced by {@link REDACTED}; `paths` collects where. A
 * secret key's value is redacted whatever its type (a list of API keys too) but a boolean (a
 * switch such as CORS `credentials: true` tells nothing). So are: an inline PEM private key
 * anywhere; the password of a URL anywhere (`redis://user:PASSWORD@host`, only the password is
 * replaced); the value a header matcher expects of a credential header (`authorization`, `cookie`,
 * `x-api-key`…).
 */
export function redact(value: unknown, path = '', paths: string[] = []): unknown {
  if (Array.isArray(value)) return value.map((v, i) => redact(v, `${path}[${i}]`, paths));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    const record = value as Record<string, unknown>;
    const credentialHeader = typeof record.name === 'string' && CREDENTIAL_HEADER.test(record.name);
    for (const [k, v] of Object.entries(value)) {
      const at = path === '' ? k : `${path}.${k}`;
      const secret = (SECRET_KEY.test(k) && typeof v !== 'boolean') || (credentialHeader && k === 'exact');
      if (v !== undefined && v !== null && secret) {
        out[k] = REDACTED;
        paths.push(at);
      } else out[k] = redact(v, at, paths);
    }
    return out;
  }
  if (typeof value === 'string' && PEM_PRIVATE.test(value)) {
    paths.push(path);
    return REDACTED;
  }
  if (typeof value === 'string') {
    const safe = withoutUrlPassword(value);
    if (safe !== undefined) {
      paths.push(path);
      return safe;
    }
  }
  return value;
}

/**
 * The `GET /config` document of a running config.
 * @param file The config file as `--config` named it; shown absolute (resolved against the working
 *   directory), so a relative `--config meshlet.yaml` still says which file runs.
 */
export function configDocument(
  config: unknown,
  file: string | undefined,
  loadedAt: Date,
  lastReload: ReloadOutcome | null,
): ConfigDocument {
  const redacted: string[] = [];
  const safe = redact(config, '', redacted);
  return {
    file: file === undefined ? null : resolve(file),
    loadedAt: isoTime(loadedAt.getTime()),
    lastReload,
    redacted,
    config: safe,
  };
}
