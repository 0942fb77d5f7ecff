// Access log lines (one JSON object per request), built by hand and written to the process logger's own stream.
import pino, { type Logger } from 'pino';
import { boundedJson, MAX_PATH_BYTES, MAX_VALUE_BYTES } from './access-log-fields.ts';
import { REDACTED } from './logger.ts';

/** A string as a JSON value (quoted and escaped); client-sent values may hold anything. */
const str = JSON.stringify as (s: string) => string;

/** A value the caller chose, as a JSON value of at most {@link MAX_VALUE_BYTES} (see {@link boundedJson}). */
const callerStr = (s: string): string => boundedJson(s, MAX_VALUE_BYTES);

/** A request's path as a JSON value: credentials redacted, then at most {@link MAX_PATH_BYTES}. */
const pathStr = (path: string): string => boundedJson(redactQuery(path), MAX_PATH_BYTES);

/** The start of every line, up to the time. */
const PREFIX = '{"level":"info","time":"';

/** `accessLog` of the config: `enabled` and `sampleRate` (0..1). */
export interface AccessLogSettings {
  readonly enabled: boolean;
  readonly sampleRate: number;
}

/**
 * Writes `access` lines in the same shape and on the same stream as the process logger's
 * (`{"level":"info","time":…,"service":"meshlet","msg":"access",…}`), without pino's generic
 * serialisation and redaction pass: the fields are fixed and hold no secrets, and that pass cost
 * about a quarter of meshlet's throughput with the access log on. The path has its credential
 * query parameters' values replaced ({@link redactQuery}). Every value a caller chooses (path,
 * method, request id, a gateway principal's subject and tenant) is cut to a fixed size
 * ({@link MAX_PATH_BYTES}, {@link MAX_VALUE_BYTES}), so a request's line stays a few KiB whatever
 * its header block holds; every value is JSON-escaped, so a line is one JSON object whatever bytes came.
 *
 * Which requests get a line: every one meshlet answered itself (an `error` code), and of the others
 * the `settings.sampleRate` share while `settings.enabled`. None when the logger's level is above
 * `info`, as pino would.
 */
export class AccessLog {
  /** The config's `accessLog`; a reload replaces it. */
  settings: AccessLogSettings;
  readonly #write: (line: string) => void;
  readonly #levelOn: boolean;
  #lastMs = -1;
  #lastIso = '';

  /**
   * @param logger the process logger (its stream and level are used; its bindings must be the root's).
   * @param settings the config's `accessLog`.
   */
  constructor(logger: Logger, settings: AccessLogSettings) {
    const stream = (logger as unknown as Record<symbol, { write(s: string): unknown }>)[
      pino.symbols.streamSym
    ]!;
    this.#write = (line) => void stream.write(line);
    this.#levelOn = logger.isLevelEnabled('info');
    this.settings = settings;
  }

  /** Whether this request gets a line: meshlet's own answers always, others as sampled. */
  #wants(error: string | undefined): boolean {
    if (!this.#levelOn) return false;
    if (error !== undefined) return true;
    const s = this.settings;
    return s.enabled && (s.sampleRate >= 1 || Math.random() < s.sampleRate);
  }

  /** ISO time of now, made once per millisecond. */
  #time(): string {
    const now = Date.now();
    if (now !== this.#lastMs) {
      this.#lastMs = now;
      this.#lastIso = new Date(now).toISOString();
    }
    return this.#lastIso;
  }

  /**
   * One outbound request, what the app sent through meshlet, if {@link AccessLog} logs it.
   * @param durationMs time from request received to response finished, milliseconds.
   * @param error meshlet's error code when meshlet answered itself.
   * @param grpcStatus a gRPC call's `grpc-status` (its service and method are the path).
   * @param principal who called through the gateway (subject, tenant, key name; never a token).
   */
  outbound(
    requestId: string,
    method: string | undefined,
    path: string,
    upstream: string,
    endpoint: string | null,
    status: number,
    attempts: number,
    durationMs: number,
    error: string | undefined,
    grpcStatus?: number,
    principal?: AccessPrincipal,
  ): void {
    if (!this.#wants(error)) return;
    this.#write(
      `${PREFIX}${this.#time()}","service":"meshlet","msg":"access","requestId":${callerStr(requestId)},"direction":"outbound"${
        method === undefined ? '' : `,"method":${callerStr(method)}`
      },"path":${pathStr(path)},"upstream":${str(upstream)},"endpoint":${endpoint === null ? 'null' : str(endpoint)},"status":${status}${
        grpcStatus === undefined ? '' : `,"grpcStatus":${grpcStatus}`
      },"attempts":${attempts},"durationMs":${durationMs}${error === undefined ? '' : `,"error":${str(error)}`}${
        principal === undefined ? '' : principalFields(principal)
      }}\n`,
    );
  }

  /**
   * One outbound request meshlet refused before choosing an upstream (a malformed target, no route):
   * always logged, as every answer of meshlet's own is.
   */
  refused(method: string | undefined, status: number, error: string): void {
    if (!this.#levelOn) return;
    this.#write(
      `${PREFIX}${this.#time()}","service":"meshlet","msg":"access","direction":"outbound"${
        method === undefined ? '' : `,"method":${callerStr(method)}`
      },"status":${status},"error":${str(error)}}\n`,
    );
  }

  /**
   * One inbound request, a peer's call to this instance's app, if {@link AccessLog} logs it.
   * @param caller the peer's SPIFFE ID. @param requestId undefined when refused before forwarding.
   */
  inbound(
    requestId: string | undefined,
    caller: string,
    peerSerial: string,
    method: string | undefined,
    path: string | undefined,
    upstream: string | undefined,
    status: number,
    durationMs: number | undefined,
    error: string | undefined,
  ): void {
    if (!this.#wants(error)) return;
    this.#write(
      `${PREFIX}${this.#time()}","service":"meshlet","msg":"access"${
        requestId === undefined ? '' : `,"requestId":${callerStr(requestId)}`
      },"direction":"inbound","caller":${str(caller)},"peerSerial":${str(peerSerial)}${
        method === undefined ? '' : `,"method":${callerStr(method)}`
      }${path === undefined ? '' : `,"path":${pathStr(path)}`}${
        upstream === undefined ? '' : `,"upstream":${str(upstream)}`
      },"status":${status}${durationMs === undefined ? '' : `,"durationMs":${durationMs}`}${
        error === undefined ? '' : `,"error":${str(error)}`
      }}\n`,
    );
  }
}

/** Who called through the gateway, as its access line names them. Never a token or a key. */
export interface AccessPrincipal {
  /** The authenticator that accepted the request (its name in `gateway.auth`). */
  readonly auth?: string | undefined;
  /** The token's subject (`sub`) or the identity service's user. */
  readonly subject?: string | undefined;
  readonly tenant?: string | undefined;
  /** The API key's name (not the key). */
  readonly key?: string | undefined;
}

function principalFields(p: AccessPrincipal): string {
  let out = '';
  if (p.auth !== undefined) out += `,"auth":${str(p.auth)}`;
  if (p.subject !== undefined) out += `,"subject":${callerStr(p.subject)}`;
  if (p.tenant !== undefined) out += `,"tenant":${callerStr(p.tenant)}`;
  if (p.key !== undefined) out += `,"keyName":${str(p.key)}`;
  return out;
}

/** Query parameter names (lowercased) whose values are credentials, besides those {@link CREDENTIAL_SUFFIXES} end. */
const CREDENTIAL_NAMES: ReadonlySet<string> = new Set(['key', 'auth', 'jwt', 'pwd', 'sig', 'signature']);

/**
 * Endings of query parameter names (lowercased) whose values are credentials: `access_token`,
 * `id_token`, `refresh_token`, `token`, `x-amz-security-token`, `client_secret`, `password`,
 * `api_key`, `apikey`, `x-api-key`…
 */
const CREDENTIAL_SUFFIXES = ['token', 'secret', 'password', 'passwd', 'apikey', 'api_key', 'api-key'];

function credentialWord(name: string): boolean {
  if (CREDENTIAL_NAMES.has(name)) return true;
  for (const suffix of CREDENTIAL_SUFFIXES) if (name.endsWith(suffix)) return true;
  return false;
}

/**
 * Whether a query parameter's name (as sent) names a credential: compared lowercased, after
 * percent-decoding (`acc%65ss_token`), and by each part of a structured name (`user[password]`,
 * `api_key[]`, `auth.token`), as the frameworks that parse them would read it.
 */
function isCredentialName(raw: string): boolean {
  let name = raw;
  if (name.includes('%')) {
    name = name.replace(/%[0-9a-f]{2}/gi, (h) => String.fromCharCode(parseInt(h.slice(1), 16)));
  }
  name = name.toLowerCase();
  if (credentialWord(name)) return true;
  if (!/[[\].]/.test(name)) return false;
  return name.split(/[[\].]+/).some((part) => part !== '' && credentialWord(part));
}

/**
 * `path` as an access line shows it: the value of every query parameter whose name is a credential
 * (see {@link isCredentialName}; separated by `&` or `;`) replaced by `[redacted]`, the logger's
 * placeholder; the rest as sent. A path without `?` is returned at once (the same string).
 */
export function redactQuery(path: string): string {
  const query = path.indexOf('?');
  if (query === -1) return path;
  const end = path.length;
  let out = path.slice(0, query + 1);
  let changed = false;
  for (let start = query + 1; start <= end;) {
    let stop = start;
    let eq = -1;
    while (stop < end) {
      const c = path.charCodeAt(stop);
      if (c === 38 /* & */ || c === 59 /* ; */) break;
      if (c === 61 /* = */ && eq === -1) eq = stop;
      stop++;
    }
    if (eq > start && eq < stop - 1 && isCredentialName(path.slice(start, eq))) {
      out += `${path.slice(start, eq + 1)}${REDACTED}`;
      changed = true;
    } else out += path.slice(start, stop);
    if (stop < end) out += path[stop];
    start = stop + 1;
  }
  return changed ? out : path;
}
