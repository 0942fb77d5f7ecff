// Metrics of mTLS: handshakes by result and reason, denied callers, certificate expiry and reloads.
import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * Why a handshake failed, as a bounded label: `no_client_certificate`, `untrusted` (another CA,
 * self-signed, a chain that does not verify), `expired`, `not_yet_valid`, `wrong_usage` (the
 * certificate's extended key usage does not allow its role, e.g. a `serverAuth`-only certificate
 * presented by a client), `no_identity` (no single SPIFFE URI SAN, or a CA certificate presented as
 * a leaf), `wrong_identity` (the server is not the service routed to), `foreign_trust_domain`,
 * `not_tls` (plaintext to the inbound port), `protocol` (version or cipher mismatch, bad record),
 * `timeout` (the handshake did not finish in time), `reset`, `other`.
 */
export type HandshakeFailureReason =
  | 'no_client_certificate'
  | 'untrusted'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_usage'
  | 'no_identity'
  | 'wrong_identity'
  | 'foreign_trust_domain'
  | 'not_tls'
  | 'protocol'
  | 'timeout'
  | 'reset'
  | 'other';

/** Maps an OpenSSL verification code or a Node TLS error code to a {@link HandshakeFailureReason}. */
export function handshakeFailureReason(code: string | undefined | null): HandshakeFailureReason {
  const c = code ?? '';
  if (c === 'CERT_HAS_EXPIRED' || c === 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED') return 'expired';
  if (c === 'CERT_NOT_YET_VALID') return 'not_yet_valid';
  if (c === 'INVALID_PURPOSE' || c === 'ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE') return 'wrong_usage';
  if (
    c === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' ||
    c === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' ||
    c === 'NO_CLIENT_CERTIFICATE'
  )
    return 'no_client_certificate';
  if (
    /SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY_LEAF|CERT_SIGNATURE_FAILURE|CERT_UNTRUSTED|UNKNOWN_CA|BAD_CERTIFICATE|CERT_REJECTED|INVALID_CA|INVALID_NON_CA|PATH_LENGTH_EXCEEDED|CERT_CHAIN_TOO_LONG/.test(
      c,
    )
  )
    return 'untrusted';
  if (c === 'ERR_SSL_HTTP_REQUEST' || c === 'ERR_SSL_WRONG_VERSION_NUMBER') return 'not_tls';
  if (c === 'ERR_MESHLET_PEER_IDENTITY') return 'wrong_identity';
  if (c === 'ECONNRESET' || c === 'EPIPE') return 'reset';
  if (c === 'ETIMEDOUT' || c === 'UND_ERR_CONNECT_TIMEOUT' || c === 'ERR_TLS_HANDSHAKE_TIMEOUT')
    return 'timeout';
  if (c.startsWith('ERR_SSL') || c.startsWith('ERR_TLS')) return 'protocol';
  return 'other';
}

/**
 * Why authorization refused a verified caller (`403 forbidden`), as a bounded label: `not_allowed`
 * (not in `listeners.inbound.allow`), `intention_denied` (Consul intentions, or the ACL default
 * policy, said no), `authorization_unavailable` (Consul could not answer and no recent decision was
 * at hand: fail closed).
 */
export type AuthzRefusalReason = 'not_allowed' | 'intention_denied' | 'authorization_unavailable';

/** The mTLS metrics, registered on the daemon's registry. */
export class TlsMetrics {
  /** `meshlet_tls_handshakes_total{direction, result, reason}`; reason is "" when ok. */
  readonly handshakes: Counter<'direction' | 'result' | 'reason'>;
  /**
   * `meshlet_inbound_denied_total{caller, reason, authz}`: requests and tunnels refused by
   * authorization or limits, by caller service; `authz` is an {@link AuthzRefusalReason} when
   * `reason` is `forbidden`, else "". Count through {@link deny}.
   */
  readonly denied: Counter<'caller' | 'reason' | 'authz'>;
  /** `meshlet_tls_certificate_expiry_timestamp_seconds{source}`: notAfter of this instance's certificate. */
  readonly certificateExpiry: Gauge<'source'>;
  /** `meshlet_tls_certificate_reloads_total{source, result}`: certificate (re)loads, ok or failed. */
  readonly reloads: Counter<'source' | 'result'>;
  /** `meshlet_inbound_requests_active`: inbound requests in flight (compared against maxConcurrent). */
  readonly inboundActive: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.handshakes = new Counter({
      name: 'meshlet_tls_handshakes_total',
      help: 'mTLS handshakes by direction (inbound, outbound), result (ok, failed) and failure reason.',
      labelNames: ['direction', 'result', 'reason'],
      registers,
    });
    this.denied = new Counter({
      name: 'meshlet_inbound_denied_total',
      help: 'Inbound requests and tunnels refused, by caller service, reason (forbidden, bad_request, overloaded, rate_limited) and, for forbidden, why authorization refused (not_allowed, intention_denied, authorization_unavailable).',
      labelNames: ['caller', 'reason', 'authz'],
      registers,
    });
    this.certificateExpiry = new Gauge({
      name: 'meshlet_tls_certificate_expiry_timestamp_seconds',
      help: "Unix time when this instance's certificate expires.",
      labelNames: ['source'],
      registers,
    });
    this.reloads = new Counter({
      name: 'meshlet_tls_certificate_reloads_total',
      help: 'Certificate loads and reloads by source (files, consul) and result (ok, failed).',
      labelNames: ['source', 'result'],
      registers,
    });
    this.inboundActive = new Gauge({
      name: 'meshlet_inbound_requests_active',
      help: 'Inbound (mTLS) requests in flight.',
      registers,
    });
  }

  /** Counts a successful handshake. */
  ok(direction: 'inbound' | 'outbound'): void {
    this.handshakes.labels(direction, 'ok', '').inc();
  }

  /** Counts an inbound refusal of `caller` (a service name); `authz` only with `forbidden`. */
  deny(
    caller: string,
    reason: 'forbidden' | 'bad_request' | 'overloaded' | 'rate_limited',
    authz: AuthzRefusalReason | '' = '',
  ): void {
    this.denied.labels(caller, reason, authz).inc();
  }

  /** Counts a failed handshake. */
  failed(direction: 'inbound' | 'outbound', reason: HandshakeFailureReason): void {
    this.handshakes.labels(direction, 'failed', reason).inc();
  }
}
