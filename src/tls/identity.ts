// Workload identity: SPIFFE IDs parsed, formatted, read from peer certificates and checked against allow-lists.
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

/**
 * Who a peer is, as its certificate's URI SAN names it. Two SPIFFE forms are understood:
 * Consul's `spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>` and the short
 * `spiffe://<trust-domain>/svc/<service>` (then `namespace` and `datacenter` are undefined).
 */
export interface WorkloadIdentity {
  /** The SPIFFE ID exactly as parsed, e.g. `spiffe://example.consul/ns/default/dc/dc1/svc/web`. */
  readonly uri: string;
  /** The trust domain (the URI's host part), lowercase, e.g. `example.consul`. */
  readonly trustDomain: string;
  /** The service name, e.g. `web`; what allow-lists name. */
  readonly service: string;
  /** Consul namespace (`default` in Consul CE); undefined for the short form. */
  readonly namespace?: string;
  /** Consul datacenter, e.g. `dc1`; undefined for the short form. */
  readonly datacenter?: string;
}

/** Where a SPIFFE ID made by {@link spiffeIdFor} lives; namespace and datacenter go together. */
export interface SpiffeIdOptions {
  /** Trust domain: lowercase letters, digits, `.`, `-`, `_` (e.g. `example.org`, `<uuid>.consul`). */
  readonly trustDomain: string;
  /** Consul namespace; with `datacenter` gives Consul's long form. Defaults to `default` when only `datacenter` is set. */
  readonly namespace?: string;
  /** Consul datacenter; with it the long form `/ns/<ns>/dc/<dc>/svc/<service>` is produced. */
  readonly datacenter?: string;
}

/** Longest SPIFFE ID accepted, in bytes (the SPIFFE spec's limit). */
export const MAX_SPIFFE_ID_LENGTH = 2048;

const SCHEME = 'spiffe://';
const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/** True when `s` is a valid SPIFFE trust domain (lowercase `a-z0-9._-`, 1–255 characters). */
export function isValidTrustDomain(s: string): boolean {
  return TRUST_DOMAIN_RE.test(s);
}

/** True when `s` is a valid SPIFFE path segment (`A-Za-z0-9._-`, not `.` or `..`); service names must be. */
export function isValidPathSegment(s: string): boolean {
  return SEGMENT_RE.test(s) && s !== '.' && s !== '..';
}

/**
 * Parses a SPIFFE ID of one of the two accepted forms. Returns undefined for anything else: another
 * scheme, an uppercase or empty trust domain, a port, user info, query or fragment, percent-encoding,
 * empty, `.` or `..` segments, a trailing slash, or another path shape (Consul agent IDs, Dapr's form).
 */
export function parseSpiffeId(uri: string): WorkloadIdentity | undefined {
  if (typeof uri !== 'string' || uri.length > MAX_SPIFFE_ID_LENGTH || !uri.startsWith(SCHEME))
    return undefined;
  const rest = uri.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const trustDomain = rest.slice(0, slash);
  if (!isValidTrustDomain(trustDomain)) return undefined;
  const segments = rest.slice(slash + 1).split('/');
  if (!segments.every(isValidPathSegment)) return undefined;
  if (segments.length === 2 && segments[0] === 'svc') {
    return { uri, trustDomain, service: segments[1]! };
  }
  if (segments.length === 6 && segments[0] === 'ns' && segments[2] === 'dc' && segments[4] === 'svc') {
    return { uri, trustDomain, service: segments[5]!, namespace: segments[1]!, datacenter: segments[3]! };
  }
  return undefined;
}

/**
 * Formats the SPIFFE ID of `service`. With a `datacenter` it is Consul's form
 * `spiffe://<td>/ns/<namespace ?? 'default'>/dc/<dc>/svc/<service>`; without one the short form
 * `spiffe://<td>/svc/<service>`. Throws RangeError naming the bad part when a part is not valid,
 * or when `namespace` is given without `datacenter`.
 */
export function spiffeIdFor(service: string, options: SpiffeIdOptions): string {
  const { trustDomain, namespace, datacenter } = options;
  if (!isValidTrustDomain(trustDomain)) {
    throw new RangeError(
      `invalid SPIFFE trust domain ${JSON.stringify(trustDomain)}: use lowercase a-z 0-9 . - _`,
    );
  }
  checkSegment('service', service);
  if (datacenter === undefined) {
    if (namespace !== undefined) throw new RangeError('a SPIFFE namespace needs a datacenter (Consul form)');
    return `${SCHEME}${trustDomain}/svc/${service}`;
  }
  const ns = namespace ?? 'default';
  checkSegment('namespace', ns);
  checkSegment('datacenter', datacenter);
  return `${SCHEME}${trustDomain}/ns/${ns}/dc/${datacenter}/svc/${service}`;
}

function checkSegment(what: string, value: string): void {
  if (!isValidPathSegment(value)) {
    throw new RangeError(`invalid SPIFFE ${what} ${JSON.stringify(value)}: use A-Z a-z 0-9 . - _`);
  }
}

/** One entry of a certificate's subject alternative names, e.g. `{ type: 'URI', value: 'spiffe://…' }`. */
export interface AltName {
  /** `DNS`, `IP Address`, `URI`, `email`, `DirName`, `othername` (value `XmppAddr:…`), as Node prints them. */
  readonly type: string;
  /** The value, unquoted and unescaped. */
  readonly value: string;
}

/**
 * Splits Node's `subjectaltname` string (`"DNS:web, IP Address:127.0.0.1, URI:spiffe://…"`). Node
 * prints a value that holds a comma, a quote, a backslash or a control character as a JSON string
 * (`URI:"spiffe://a, URI:spiffe://b"`), so such a value stays one entry and is unescaped here; the
 * list is then split on `", "`. Returns undefined when the string is malformed.
 */
export function parseSubjectAltNames(text: string): AltName[] | undefined {
  const out: AltName[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) return undefined;
    const type = text.slice(i, colon);
    if (type === '' || type.includes(',')) return undefined;
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      const end = endOfJsonString(text, j);
      if (end < 0) return undefined;
      try {
        value = JSON.parse(text.slice(j, end + 1)) as string;
      } catch {
        return undefined;
      }
      j = end + 1;
    } else {
      const comma = text.indexOf(', ', j);
      const end = comma < 0 ? text.length : comma;
      value = text.slice(j, end);
      j = end;
    }
    out.push({ type, value });
    if (j === text.length) break;
    if (!text.startsWith(', ', j)) return undefined;
    i = j + 2;
  }
  return out;
}

/** Index of the quote closing the JSON string that opens at `start`, or -1. */
function endOfJsonString(text: string, start: number): number {
  for (let k = start + 1; k < text.length; k++) {
    const c = text[k];
    if (c === '\\') k++;
    else if (c === '"') return k;
  }
  return -1;
}

/** Options of {@link identityFromPeerCertificate}. */
export interface PeerIdentityOptions {
  /** When set, an identity from another trust domain is refused (undefined). Default: any trust domain. */
  readonly trustDomain?: string;
}

/**
 * The workload identity in a peer certificate's URI SAN. Takes what `tlsSocket.getPeerCertificate()`
 * returns (an empty object when the peer sent none), a DER certificate, or a node:crypto
 * `X509Certificate`. As the X.509-SVID spec requires, the certificate must be a leaf (a CA
 * certificate, `basicConstraints` CA:TRUE, is no SVID: rustls, and so Linkerd, refuse a CA used as
 * an end entity), hold exactly one URI SAN, and that must be a SPIFFE ID of an accepted form;
 * otherwise (or when no certificate, or a foreign trust domain with `options.trustDomain`) the
 * result is undefined. Does not verify the chain: call it only on a certificate the TLS layer has
 * already verified (`socket.authorized`).
 */
export function identityFromPeerCertificate(
  cert: PeerCertificate | X509Certificate | Uint8Array | undefined,
  options: PeerIdentityOptions = {},
): WorkloadIdentity | undefined {
  const read = readPeerIdentity(cert, options);
  return 'identity' in read ? read.identity : undefined;
}

/** Longest URI quoted in a {@link readPeerIdentity} problem, characters. */
const QUOTED_URI_MAX = 120;

/**
 * {@link identityFromPeerCertificate}, saying why when there is no identity: `problem` is a short
 * sentence for the log (`no URI SAN`, `2 URI SANs (an X.509-SVID holds exactly one)`, `URI SAN
 * "https://…" is not a spiffe:// ID`, `SPIFFE ID "spiffe://…" is not of an accepted form`, `a CA
 * certificate presented as a leaf`, `trust domain "other.test" is not "mesh.test"`). It quotes at
 * most the certificate's URI, cut to 120 characters; never keys or other certificate contents.
 */
export function readPeerIdentity(
  cert: PeerCertificate | X509Certificate | Uint8Array | undefined,
  options: PeerIdentityOptions = {},
): { identity: WorkloadIdentity } | { problem: string } {
  if (isCaCertificate(cert)) return { problem: 'a CA certificate presented as a leaf' };
  const text = subjectAltNameOf(cert);
  if (text === undefined || text === '') return { problem: 'no URI SAN (no subject alternative names)' };
  const names = parseSubjectAltNames(text);
  if (names === undefined) return { problem: 'subject alternative names do not parse' };
  const uris = names.filter((n) => n.type === 'URI');
  if (uris.length === 0) return { problem: 'no URI SAN' };
  if (uris.length > 1) return { problem: `${uris.length} URI SANs (an X.509-SVID holds exactly one)` };
  const uri = uris[0]!.value;
  const identity = parseSpiffeId(uri);
  if (identity === undefined) {
    return uri.startsWith(SCHEME)
      ? { problem: `SPIFFE ID ${quoteUri(uri)} is not of an accepted form` }
      : { problem: `URI SAN ${quoteUri(uri)} is not a spiffe:// ID` };
  }
  if (options.trustDomain !== undefined && identity.trustDomain !== options.trustDomain)
    return {
      problem: `trust domain ${JSON.stringify(identity.trustDomain)} is not ${JSON.stringify(options.trustDomain)}`,
    };
  return { identity };
}

function quoteUri(uri: string): string {
  return JSON.stringify(uri.length > QUOTED_URI_MAX ? `${uri.slice(0, QUOTED_URI_MAX)}…` : uri);
}

/** Whether `cert` says it is a CA (basicConstraints CA:TRUE); false when it cannot tell. */
function isCaCertificate(cert: PeerCertificate | X509Certificate | Uint8Array | undefined): boolean {
  if (cert === undefined || cert === null) return false;
  if (cert instanceof X509Certificate) return cert.ca;
  if (cert instanceof Uint8Array) {
    try {
      return new X509Certificate(cert).ca;
    } catch {
      return false;
    }
  }
  return (cert as Partial<PeerCertificate>).ca === true;
}

function subjectAltNameOf(
  cert: PeerCertificate | X509Certificate | Uint8Array | undefined,
): string | undefined {
  if (cert === undefined || cert === null) return undefined;
  if (cert instanceof X509Certificate) return cert.subjectAltName;
  if (cert instanceof Uint8Array) {
    try {
      return new X509Certificate(cert).subjectAltName;
    } catch {
      return undefined;
    }
  }
  const san = (cert as Partial<PeerCertificate>).subjectaltname;
  return typeof san === 'string' ? san : undefined;
}

/**
 * Whether `identity` may call: `'*'` allows any identity; a list allows an identity whose service it
 * names (`orders`), or whose full SPIFFE ID it names (`spiffe://…`), or any identity when it holds `'*'`.
 * No identity (undefined) is never allowed; an empty list allows nobody.
 */
export function isAllowed(identity: WorkloadIdentity | undefined, allow: readonly string[] | '*'): boolean {
  if (identity === undefined) return false;
  if (allow === '*') return true;
  for (const entry of allow) {
    if (entry === '*' || entry === identity.service || entry === identity.uri) return true;
  }
  return false;
}
