// Access log lines (one JSON object per request), built by hand and written to the process logger's own stream.
import pino, { type Logger } from 'pino';
import { boundedJson, MAX_PATH_BYTES, MAX_VALUE_BYTES } from './access-log-fields.ts';
import { REDACTED } from './logger.ts';
import type { TunnelEnd, TunnelKind } from './tunnel-metrics.ts';
import { isoTime } from './utc-time.ts';

/** A string as a JSON value (quoted and escaped); client-sent values may hold anything. */
const str = JSON.stringify as (s: string) => string;

/** A value the caller chose, as a JSON value of at most {@link MAX_VALUE_BYTES} (see {@link boundedJson}). */
const callerStr = (s: string): string => boundedJson(s, MAX_VALUE_BYTES);

/** A request's path as a JSON value: credentials redacted, then at most {@link MAX_PATH_BYTES}. */
const pathStr = (path: string): string => boundedJson(redactQuery(path), MAX_PATH_BYTES);

/** The start of every line, up to the time. */
const PREFIX = '{"level":"info","time":"';

/** Milliseconds since `startedAt` (a `performance.now()`), to the microsecond: an access line's `durationMs`. */
export function elapsedMs(startedAt: number): number {
  return Math.round((performance.now() - startedAt) * 1e3) / 1e3;
}

/** Status logged when the client's side went away before the answer finished (nginx's 499). */
export const CLIENT_CLOSED = 499;

/** Who cut a request's connection, on its access line as `cutBy`: `drain` at `shutdown.drainTimeout`. */
export type CutBy = 'drain';

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
 * Which requests get a line: every one meshlet answered itself (an `error` code) or cut (`cutBy`),
 * and of the others the `settings.sampleRate` share while `settings.enabled`. None when the logger's
 * level is above `info`, as pino would.
 *
 * Once {@link cut} was called (the daemon destroys the connections left at `shutdown.drainTimeout`),
 * a line with status {@link CLIENT_CLOSED} is one of those connections: meshlet cut it, the client
 * did not leave, and the line says `"cutBy":"drain"` after its `status`.
 */
export class AccessLog {
  /** The config's `accessLog`; a reload replaces it. */
  settings: AccessLogSettings;
  readonly #write: (line: string) => void;
  readonly #levelOn: boolean;
  #lastMs = -1;
  #lastIso = '';
  /** Set once meshlet cuts the connections still open (see {@link cut}). */
  #cutBy: CutBy | undefined;

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

  /**
   * Marks every later line with status {@link CLIENT_CLOSED} as cut by `by`: called by the daemon
   * just before it destroys the connections still open at `shutdown.drainTimeout`. Never undone.
   */
  cut(by: CutBy): void {
    this.#cutBy = by;
  }

  /** Who cut a request that ended with `status`, if meshlet did: `,"cutBy":…` or nothing. */
  #cutField(status: number): string {
    return status === CLIENT_CLOSED && this.#cutBy !== undefined ? `,"cutBy":"${this.#cutBy}"` : '';
  }

  /** Whether this request gets a line: meshlet's own answers and cuts always, others as sampled. */
  #wants(error: string | undefined, status: number): boolean {
    if (!this.#levelOn) return false;
    if (error !== undefined || (status === CLIENT_CLOSED && this.#cutBy !== undefined)) return true;
    const s = this.settings;
    return s.enabled && (s.sampleRate >= 1 || Math.random() < s.sampleRate);
  }

  /** ISO time of now, made once per millisecond. */
  #time(): string {
    const now = Date.now();
    if (now !== this.#lastMs) {
      this.#lastMs = now;
      this.#lastIso = isoTime(now);
    }
    return this.#lastIso;
  }

  /**
   * One outbound request, what the app sent through meshlet (or a client through the gateway), if
   * {@link AccessLog} logs it; also a request meshlet refused before any endpoint (`endpoint` null,
   * `attempts` 0, `upstream` `""` before routing).
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
    if (!this.#wants(error, status)) return;
    this.#write(
      `${PREFIX}${this.#time()}","service":"meshlet","msg":"access","requestId":${callerStr(requestId)},"direction":"outbound"${
        method === undefined ? '' : `,"method":${callerStr(method)}`
      },"path":${pathStr(path)},"upstream":${str(upstream)},"endpoint":${endpoint === null ? 'null' : str(endpoint)},"status":${status}${this.#cutField(status)}${
        grpcStatus === undefined ? '' : `,"grpcStatus":${grpcStatus}`
      },"attempts":${attempts},"durationMs":${durationMs}${error === undefined ? '' : `,"error":${str(error)}`}${
        principal === undefined ? '' : principalFields(principal)
      }}\n`,
    );
  }

  /**
   * One request a listener refused before its head was parsed (a malformed or slow head): always
   * logged, as every answer of meshlet's own is. The {@link outbound} line's fields but those the
   * listener does not have: no `requestId` (none was kept, and the listener's answer echoes none),
   * no `path` (the target was never parsed), no `durationMs` (the head's arrival is not known);
   * `upstream` is `""` (as the metric label), `endpoint` null and `attempts` 0. A refusal of a
   * parsed request, by the listener (too many header fields, no Host, another HTTP version, CONNECT
   * where no tunnel opens) or a handler (no route, a malformed target, the gateway's own answers),
   * is an {@link outbound} line with every field.
   */
  refused(method: string | undefined, status: number, error: string): void {
    if (!this.#levelOn) return;
    this.#write(
      `${PREFIX}${this.#time()}","service":"meshlet","msg":"access","direction":"outbound"${
        method === undefined ? '' : `,"method":${callerStr(method)}`
      },"upstream":"","endpoint":null,"status":${status},"attempts":0,"error":${str(error)}}\n`,
    );
  }

  /**
   * One inbound request, a peer's call to this instance's app, if {@link AccessLog} logs it; also
   * one the inbound handler refused (a caller not allowed, a malformed request, a deadline too
   * short, the listener's limits), with every field a forwarded request's line has.
   * @param caller the peer's SPIFFE ID.
   * @param requestId the one sent to the app (or echoed on meshlet's refusal); undefined only for a
   *   request the listener answered before its head was parsed (a malformed or slow head): no id
   *   was kept or echoed.
   * @param path undefined in that case too (the target may never have been parsed).
   * @param upstream this instance's service; undefined in that case.
   * @param durationMs from the request received to its answer finished, milliseconds; undefined in
   *   that case (when the head began to arrive is not known).
   * @param grpcStatus a gRPC call's `grpc-status` (the app's, or meshlet's own answer's mapped one).
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
    grpcStatus?: number,
  ): void {
    if (!this.#wants(error, status)) return;
    this.#write(
      `${PREFIX}${this.#time()}","service":"meshlet","msg":"access"${
        requestId === undefined ? '' : `,"requestId":${callerStr(requestId)}`
      },"direction":"inbound","caller":${str(caller)},"peerSerial":${str(peerSerial)}${
        method === undefined ? '' : `,"method":${callerStr(method)}`
      }${path === undefined ? '' : `,"path":${pathStr(path)}`}${
        upstream === undefined ? '' : `,"upstream":${str(upstream)}`
      },"status":${status}${this.#cutField(status)}${
        grpcStatus === undefined ? '' : `,"grpcStatus":${grpcStatus}`
      }${durationMs === undefined ? '' : `,"durationMs":${durationMs}`}${
        error === undefined ? '' : `,"error":${str(error)}`
      }}\n`,
    );
  }

  /**
   * One tunnel (a WebSocket or another upgrade, or CONNECT), if {@link AccessLog} logs it: written
   * once, when the tunnel ended (established: `status` 101 or 200, bytes each way, `closeReason`),
   * or at once when it never opened (meshlet's refusal or failure with its `error`, the upstream's
   * answer passed on, or 499 when the client left during the handshake). Sampled like requests.
   */
  tunnel(line: TunnelAccessLine): void {
    if (!this.#wants(line.error, line.status)) return;
    let out = `${PREFIX}${this.#time()}","service":"meshlet","msg":"access"`;
    if (line.requestId !== undefined) out += `,"requestId":${callerStr(line.requestId)}`;
    out += `,"direction":"${line.direction}","kind":"${line.kind}"`;
    if (line.caller !== undefined) out += `,"caller":${str(line.caller)}`;
    if (line.peerSerial !== undefined) out += `,"peerSerial":${str(line.peerSerial)}`;
    if (line.method !== undefined) out += `,"method":${callerStr(line.method)}`;
    if (line.path !== undefined) out += `,"path":${pathStr(line.path)}`;
    if (line.upstream !== undefined) out += `,"upstream":${callerStr(line.upstream)}`;
    if (line.endpoint !== undefined)
      out += `,"endpoint":${line.endpoint === null ? 'null' : str(line.endpoint)}`;
    out += `,"status":${line.status}${this.#cutField(line.status)}`;
    if (line.attempts !== undefined) out += `,"attempts":${line.attempts}`;
    out += `,"durationMs":${line.durationMs}`;
    if (line.bytesReceived !== undefined) out += `,"bytesReceived":${line.bytesReceived}`;
    if (line.bytesSent !== undefined) out += `,"bytesSent":${line.bytesSent}`;
    if (line.closeReason !== undefined) out += `,"closeReason":"${line.closeReason}"`;
    if (line.error !== undefined) out += `,"error":${str(line.error)}`;
    this.#write(`${out}}\n`);
  }
}

/** What a tunnel's access line says ({@link AccessLog.tunnel}); absent fields are left out. */
export interface TunnelAccessLine {
  readonly direction: 'outbound' | 'inbound';
  readonly kind: TunnelKind;
  readonly requestId?: string | undefined;
  /** Inbound: the peer's SPIFFE ID and certificate serial. */
  readonly caller?: string | undefined;
  readonly peerSerial?: string | undefined;
  readonly method?: string | undefined;
  /** The request target: a path, or CONNECT's authority. */
  readonly path?: string | undefined;
  /** The upstream (inbound: this instance's service); `""` when meshlet refused before routing chose one. */
  readonly upstream?: string | undefined;
  /** Outbound: the endpoint dialled last, null when none was. */
  readonly endpoint?: string | null | undefined;
  /** 101 / 200 for an established tunnel, else the answer the client got (499: it left first). */
  readonly status: number;
  readonly attempts?: number | undefined;
  /** From the handshake received to the tunnel's end (or the refusal), milliseconds. */
  readonly durationMs: number;
  /** Established: bytes from the client, relayed to the upstream. */
  readonly bytesReceived?: number | undefined;
  /** Established: bytes to the client, from the upstream. */
  readonly bytesSent?: number | undefined;
  /** Established: why it ended (`closed` by a side, `idle`, `error`, `drain`), as `meshlet_tunnels_closed_total` counts it. */
  readonly closeReason?: TunnelEnd | undefined;
  /** meshlet's error code when meshlet answered the handshake itself. */
  readonly error?: string | undefined;
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
