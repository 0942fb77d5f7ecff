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
  | { readonly kind: 'unavailable'; readonly reason: string }
  /**
   * Could not decide, and the authenticator lets such a request go on unauthenticated (`failOpen`):
   * unless another authenticator accepts it (or could not decide either, failing closed), the
   * request goes on with no principal, which no `allow` passes.
   */
  | { readonly kind: 'failOpen'; readonly reason: string };

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

/**
 * A value that cannot go in a header as it is: anything but printable ASCII (controls could inject a
 * header line; non-Latin-1 text cannot be sent at all, and Latin-1 bytes reach a UTF-8 reader
 * garbled), a `%` (so that decoding is never ambiguous), or leading or trailing whitespace (which
 * header parsers trim).
 */
const NEEDS_ENCODING = /[^\x20-\x7e]|%|^ | $/;

/**
 * Percent-encodes the UTF-8 bytes of `text` that are not printable ASCII, space and `%` included;
 * `decodeURIComponent` gives the text back. A lone surrogate becomes U+FFFD.
 */
function percentEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out +=
      byte > 0x20 && byte < 0x7f && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * A claim or field as a header value: strings as they are, arrays comma-joined, others as JSON. A
 * value holding anything but printable ASCII, or a `%`, is percent-encoded (UTF-8) whole, so an
 * upstream that percent-decodes every identity header gets each value back exactly ("山田太郎" is
 * `%E5%B1%B1%E7%94%B0%E5%A4%AA%E9%83%8E`), and an authenticated caller is never refused for its name.
 */
export function headerValue(value: unknown): string {
  const text =
    typeof value === 'string'
      ? value
      : Array.isArray(value)
        ? value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(',')
        : JSON.stringify(value);
  return NEEDS_ENCODING.test(text) ? percentEncode(text) : text;
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
