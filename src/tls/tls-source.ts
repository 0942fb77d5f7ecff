// Where this instance's certificate, key and trust bundle come from: the contract files and Consul sources share.
import { type CertificateInfo, parseCertificateBundle, parseCertificatePem } from './certificate-info.ts';
import type { WorkloadIdentity } from './identity.ts';

/** One consistent set of TLS inputs: this instance's certificate and key, and the CAs it trusts. */
export interface TlsMaterial {
  /** This instance's certificate (optionally followed by intermediates), PEM. */
  readonly certPem: string;
  /** Its private key, PEM. */
  readonly keyPem: string;
  /** The trust bundle: every CA certificate peers may chain to, PEM. */
  readonly caPem: string;
  /** Facts of this instance's certificate (serial, expiry, identity). */
  readonly cert: CertificateInfo;
  /** Trust domain peers must belong to; undefined = any identity that chains to the bundle. */
  readonly trustDomain: string | undefined;
}

/** Builds a {@link TlsMaterial}, parsing the certificate. Throws TlsFileError on bad PEM. */
export function tlsMaterial(
  certPem: string,
  keyPem: string,
  caPem: string,
  trustDomain: string | undefined,
): TlsMaterial {
  parseCertificateBundle(caPem, 'tls.ca');
  return { certPem, keyPem, caPem, cert: parseCertificatePem(certPem, 'tls.cert'), trustDomain };
}

/** An inbound caller's authorization decision from the source (Consul intentions). */
export interface AuthorizeResult {
  readonly allowed: boolean;
  /** Why, in words (Consul's `Reason`). */
  readonly reason: string;
}

/**
 * A certificate source. `start` loads the first material (rejecting when it cannot); afterwards the
 * source keeps it fresh by itself and calls the `onChange` listeners with each new material.
 */
export interface TlsSource {
  /** `files` or `consul`: the metric and log label. */
  readonly kind: 'files' | 'consul';
  /** Loads the first material and starts watching. Rejects when nothing usable can be loaded. */
  start(): Promise<void>;
  /** The material in use now. Throws before `start` resolved. */
  current(): TlsMaterial;
  /** Registers a listener for new material; returns a function that removes it. */
  onChange(listener: (material: TlsMaterial) => void): () => void;
  /**
   * Present when the source decides who may call (Consul intentions); then the inbound listener
   * asks it instead of `listeners.inbound.allow`.
   */
  authorize?(caller: WorkloadIdentity, serial: string): Promise<AuthorizeResult>;
  /** Stops watching and cancels pending fetches. */
  stop(): Promise<void>;
}

/** A small listener list for sources. */
export class ChangeListeners {
  readonly #listeners = new Set<(material: TlsMaterial) => void>();

  add(listener: (material: TlsMaterial) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(material: TlsMaterial): void {
    for (const l of this.#listeners) l(material);
  }
}
