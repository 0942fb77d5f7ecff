// The contract every gateway authenticator (jwt, validate, apiKey) implements, and the identity it yields.
import type { IncomingHttpHeaders } from 'node:http';
import type { LimitVerdict } from './rate-limits.ts';

/** Who a gateway request is from, once an authenticator accepted its credential. */
export interface Principal {
  /** The authenticator's name in `gateway.auth`. */
  readonly auth: string;
  readonly subject: string | undefined;
  readonly tenant: string | undefined;
  /** The API key's name (never the key). */
  readonly key: string | undefined;
  readonly roles: readonly string[];
  /** The verified claims (jwt) or the identity service's fields (validate), for `allow.claims`. */
  readonly claims: Readonly<Record<string, unknown>>;
  /** `[name, value, …]` identity headers sent upstream. */
  readonly headers: readonly string[];
  /** The API key's own token bucket, when its entry has a `rateLimit`. */
  readonly limit: { take(): LimitVerdict } | undefined;
}

/** What one authenticator made of a request. */
export type AuthOutcome =
  /** No credential of its kind: the next authenticator is asked. */
  | { readonly kind: 'skip' }
  | { readonly kind: 'ok'; readonly principal: Principal }
  /** A credential of its kind that does not verify (401). */
  | { readonly kind: 'invalid'; readonly reason: string }
  /** Could not decide (the identity service or JWKS server is down). */
  | { readonly kind: 'unavailable'; readonly reason: string };

export const SKIP: AuthOutcome = Object.freeze({ kind: 'skip' });

/** The request parts authenticators read, taken once per request. */
export interface Credentials {
  /** The `Authorization: Bearer` token, if any. */
  readonly bearer: string | undefined;
  readonly headers: IncomingHttpHeaders;
}

/** A named authenticator built from `gateway.auth.NAME` at load time. */
export interface Authenticator {
  readonly name: string;
  /** The `WWW-Authenticate` challenge for a 401 (without error parameters). */
  readonly challenge: string;
  /** Lowercased headers this authenticator sets upstream; every client copy is removed. */
  readonly identityHeaders: readonly string[];
  /** Decides on a request; may answer synchronously (a cached decision). */
  authenticate(credentials: Credentials): AuthOutcome | Promise<AuthOutcome>;
  /** Stops watchers and timers. */
  close(): void;
}

/** Whether a bearer token has the shape of a compact JWS (three base64url parts): jwt authenticators skip others. */
export function looksLikeJwt(token: string): boolean {
  const a = token.indexOf('.');
  if (a <= 0) return false;
  const b = token.indexOf('.', a + 1);
  return b > a + 1 && token.indexOf('.', b + 1) === -1;
}

/** The bearer token of an `Authorization` header, or undefined. */
export function bearerOf(headers: IncomingHttpHeaders): string | undefined {
  const h = headers.authorization;
  if (h === undefined || h.length < 8) return undefined;
  if (h.charCodeAt(6) !== 32 || h.slice(0, 6).toLowerCase() !== 'bearer') return undefined;
  const token = h.slice(7).trim();
  return token === '' ? undefined : token;
}

/** Characters a header value may not hold (controls but tab): a claim cannot inject a header line. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex
const CONTROL_ALL = /[\u0000-\u0008\u000a-\u001f\u007f]/g;

/** A claim or field as a header value: strings as they are, arrays comma-joined, others as JSON; no control characters. */
export function headerValue(value: unknown): string {
  const text =
    typeof value === 'string'
      ? value
      : Array.isArray(value)
        ? value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(',')
        : JSON.stringify(value);
  return CONTROL.test(text) ? text.replace(CONTROL_ALL, '') : text;
}

/** Roles from a claim: an array of strings, or one string separated by spaces or commas. */
export function rolesOf(value: unknown): readonly string[] {
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  if (typeof value === 'string') return value.split(/[\s,]+/).filter((r) => r !== '');
  return [];
}

/** A string claim or field (numbers turned to text), else undefined. */
export function stringOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (typeof value === 'number') return String(value);
  return undefined;
}

/** Builds a principal from verified claims (or identity-service fields) and a `field → header` map. */
export function principalFromClaims(
  auth: string,
  claims: Readonly<Record<string, unknown>>,
  headerMap: Readonly<Record<string, string>>,
  fields: { subjectClaim: string; tenantClaim: string; rolesClaim: string },
): Principal {
  const headers: string[] = [];
  for (const claim in headerMap) {
    const value = claims[claim];
    if (value !== undefined && value !== null) headers.push(headerMap[claim]!, headerValue(value));
  }
  return {
    auth,
    subject: stringOf(claims[fields.subjectClaim]),
    tenant: stringOf(claims[fields.tenantClaim]),
    key: undefined,
    roles: rolesOf(claims[fields.rolesClaim]),
    claims,
    headers,
    limit: undefined,
  };
}
