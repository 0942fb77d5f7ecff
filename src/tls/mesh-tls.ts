// The live TLS state of one meshlet: current secure contexts from a source, swapped on rotation, with metrics and logs.
import { constants } from 'node:crypto';
import {
  createSecureContext,
  type SecureContext,
  type SecureContextOptions,
  type SecureVersion,
} from 'node:tls';
import type { Logger } from '../telemetry/logger.ts';
import type { TlsMetrics } from '../telemetry/tls-metrics.ts';
import { RefusalLog } from './refusal-log.ts';
import type { TlsMaterial, TlsSource } from './tls-source.ts';
import { isoTime } from '../telemetry/utc-time.ts';

/**
 * The cipher suites meshlet accepts and offers between sidecars: TLS 1.3's three AEAD suites and,
 * for TLS 1.2 (`minTlsVersion: TLSv1.2`), only ECDHE key exchange with an AEAD cipher, as Envoy's
 * server defaults and rustls (Linkerd) do. Node's default list would also take static-RSA key
 * exchange (no forward secrecy), CBC and ARIA suites.
 */
export const MESH_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
].join(':');

/**
 * `SSL_OP_NO_TICKET` for the inbound server: no session tickets, TLS 1.3 and 1.2 (and node:tls
 * keeps no server session cache, so no session-ID resumption either). A resumed session skips
 * certificate verification: a caller whose certificate expired since its last full handshake
 * would get in by resuming, for the ticket's lifetime (node's 300 s) until the next rotation.
 * meshlet's own outbound connections never resume, so this costs peers nothing.
 */
export const NO_SESSION_RESUMPTION = constants.SSL_OP_NO_TICKET;

/**
 * `SSL_OP_NO_RENEGOTIATION` for the inbound server: TLS 1.2 renegotiation (`minTlsVersion:
 * TLSv1.2`; TLS 1.3 has none) is refused. Each renegotiation is a full handshake the caller can
 * ask for at will on one connection (CPU spent on the server's side), and HTTP/2 forbids it
 * (RFC 9113 §9.2.1); meshlet's own outbound connections never renegotiate. The gateway refuses it too.
 */
export const NO_RENEGOTIATION = constants.SSL_OP_NO_RENEGOTIATION;

/** The inbound server's `secureOptions`: {@link NO_SESSION_RESUMPTION} and {@link NO_RENEGOTIATION}. */
export const INBOUND_SECURE_OPTIONS = NO_SESSION_RESUMPTION | NO_RENEGOTIATION;

/** Options of {@link MeshTls}. */
export interface MeshTlsOptions {
  readonly source: TlsSource;
  readonly metrics: TlsMetrics;
  readonly logger: Logger;
  /** Lowest TLS version accepted and offered. Default `TLSv1.3`. */
  readonly minVersion?: SecureVersion;
}

/**
 * Holds the secure context built from the source's current material. Outbound connections take
 * {@link clientContext} at connect time and the inbound server gets {@link serverContextOptions}
 * through `setSecureContext` on every change, so new connections always use the newest certificate
 * while established keep-alive connections keep theirs. Every change is logged (`tls certificate
 * reloaded` with serial and expiry) and exported as the expiry gauge.
 */
export class MeshTls {
  readonly source: TlsSource;
  readonly metrics: TlsMetrics;
  readonly minVersion: SecureVersion;
  /** Where the inbound listener reports refused handshakes: one warning per peer and reason per 10 min. */
  readonly refusals: RefusalLog;
  readonly #logger: Logger;
  #material: TlsMaterial | null = null;
  #client: SecureContext | null = null;
  #unsubscribe: (() => void) | null = null;
  readonly #listeners = new Set<(options: SecureContextOptions) => void>();

  constructor(options: MeshTlsOptions) {
    this.source = options.source;
    this.metrics = options.metrics;
    this.minVersion = options.minVersion ?? 'TLSv1.3';
    this.#logger = options.logger;
    this.refusals = new RefusalLog(options.logger);
  }

  /** Starts the source and builds the first contexts. Rejects when the source cannot load. */
  async start(): Promise<void> {
    await this.source.start();
    this.#apply(this.source.current(), 'loaded');
    this.#unsubscribe = this.source.onChange((m) => this.#apply(m, 'reloaded'));
  }

  /** The material in use. */
  get material(): TlsMaterial {
    if (this.#material === null) throw new Error('MeshTls not started');
    return this.#material;
  }

  /** The trust domain peers must belong to (undefined: any that chains to the bundle). */
  get trustDomain(): string | undefined {
    return this.material.trustDomain;
  }

  /** The client secure context for a new outbound connection (newest certificate). */
  clientContext(): SecureContext {
    if (this.#client === null) throw new Error('MeshTls not started');
    return this.#client;
  }

  /**
   * Options for `tls.Server#setSecureContext` / `createServer` with the newest certificate. The
   * server hands out no session tickets ({@link NO_SESSION_RESUMPTION}): every inbound connection
   * verifies the caller's certificate as it is now; and it refuses TLS 1.2 renegotiation
   * ({@link NO_RENEGOTIATION}).
   */
  serverContextOptions(): SecureContextOptions {
    const m = this.material;
    return {
      cert: m.certPem,
      key: m.keyPem,
      ca: m.caPem,
      minVersion: this.minVersion,
      ciphers: MESH_CIPHERS,
      honorCipherOrder: true,
      secureOptions: INBOUND_SECURE_OPTIONS,
    };
  }

  /** Calls `listener` with new server context options after each rotation; returns an unsubscribe function. */
  onServerContext(listener: (options: SecureContextOptions) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    await this.source.stop();
  }

  #apply(material: TlsMaterial, what: 'loaded' | 'reloaded'): void {
    const client = createSecureContext({
      cert: material.certPem,
      key: material.keyPem,
      ca: material.caPem,
      minVersion: this.minVersion,
      ciphers: MESH_CIPHERS,
    });
    this.#material = material;
    this.#client = client;
    const kind = this.source.kind;
    this.metrics.certificateExpiry.labels(kind).set(Math.floor(material.cert.notAfter.getTime() / 1000));
    this.metrics.reloads.labels(kind, 'ok').inc();
    this.#logger.info({
      msg: `tls certificate ${what}`,
      source: kind,
      serial: material.cert.serialNumber,
      spiffeId: material.cert.spiffeId ?? null,
      notAfter: isoTime(material.cert.notAfter.getTime()),
    });
    const options = this.serverContextOptions();
    for (const l of this.#listeners) l(options);
  }
}
