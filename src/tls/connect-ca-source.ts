// Certificate source `consul`: leaf and roots from the agent's Connect CA, kept fresh; intentions for authorization.
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ControlAgent, request } from '../control-plane/control-request.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { TlsMetrics } from '../telemetry/tls-metrics.ts';
import { checkKeyMatchesCertificate } from './certificate-info.ts';
import type { WorkloadIdentity } from './identity.ts';
import {
  type AuthorizeResult,
  ChangeListeners,
  type TlsMaterial,
  type TlsSource,
  tlsMaterial,
} from './tls-source.ts';
import { isoTime } from '../telemetry/utc-time.ts';

/** Options of {@link ConnectCaSource}. */
export interface ConnectCaSourceOptions {
  /** Agent address, `http(s)://host:port`. */
  readonly address: string;
  /** ACL token (needs `service:write` on `service` for the leaf). */
  readonly token?: string | undefined;
  /** TLS to the agent: PEM file paths. */
  readonly agentTls?:
    { ca?: string | undefined; cert?: string | undefined; key?: string | undefined } | undefined;
  /** This instance's service name: the leaf is issued for it and intentions are checked against it. */
  readonly service: string;
  /** Overrides the trust domain Consul reports. */
  readonly trustDomain?: string | undefined;
  readonly logger: Logger;
  readonly metrics: TlsMetrics;
  /** `wait` of the blocking queries, ms. Default 5 min. */
  readonly waitMs?: number;
  /** How long an intentions decision is reused, ms. Default 1000. */
  readonly authorizeCacheMs?: number;
  /** How long a cached decision may serve while the agent cannot answer, ms. Default 60 000. */
  readonly authorizeStaleMs?: number;
  /** Error backoff bounds, ms. Defaults 500 and 30 000. */
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
}

interface LeafAnswer {
  SerialNumber: string;
  CertPEM: string;
  PrivateKeyPEM: string;
  ValidAfter: string;
  ValidBefore: string;
}
interface RootsAnswer {
  TrustDomain: string;
  Roots: { RootCert: string; IntermediateCerts: string[] | null; Active: boolean }[];
}

/** A Connect CA answer that parsed as JSON but cannot be served (bad PEM, key not matching, another service). */
class UnusableAnswerError extends Error {}

/** Share of a leaf's lifetime after which meshlet fetches a new one itself (Consul renews in 60–90 %). */
const RENEW_AT = 0.9;

/**
 * Least time between the starts of two reads of one loop, ms: an agent (or a proxy in front of it)
 * that answers at once, without `X-Consul-Index` or with an index that keeps moving, must not make
 * the loop spin (Consul's blocking-query docs ask clients to rate-limit).
 */
const MIN_READ_INTERVAL_MS = 100;

/**
 * Keeps this instance's leaf certificate and the CA roots fresh with two blocking-query loops on
 * `/v1/agent/connect/ca/leaf/<service>` and `/v1/agent/connect/ca/roots`; every change is applied
 * at once (new connections use it). It does not trust the leaf query to return in time: at 90 % of
 * the leaf's lifetime (`ValidAfter`..`ValidBefore`) it cancels the pending query and fetches again,
 * and keeps doing so with backoff until a new leaf arrives (consul#16779). An answer that cannot be
 * served (PEM that does not parse, a key that does not match the certificate, a leaf for another
 * service or already expired) is refused as a whole: the previous leaf and roots stay in use, the
 * refusal is counted (`meshlet_tls_certificate_reloads_total{source="consul",result="failed"}`) and
 * logged as a warning, and the query is retried with the error backoff from the index before it, so
 * the agent's next good answer is applied. Authorization asks
 * `POST /v1/agent/connect/authorize` and caches each caller's decision briefly.
 */
export class ConnectCaSource implements TlsSource {
  readonly kind = 'consul' as const;
  readonly #o: ConnectCaSourceOptions;
  readonly #base: string;
  readonly #headers: Record<string, string>;
  readonly #dispatcher: ControlAgent;
  readonly #listeners = new ChangeListeners();
  #leaf: LeafAnswer | null = null;
  #roots: RootsAnswer | null = null;
  #material: TlsMaterial | null = null;
  #stopped = false;
  #leafAbort: AbortController | null = null;
  #rootsAbort: AbortController | null = null;
  #renewTimer: NodeJS.Timeout | null = null;
  readonly #decisions = new Map<string, { result: AuthorizeResult; at: number }>();

  constructor(options: ConnectCaSourceOptions) {
    this.#o = options;
    const url = new URL(options.address);
    this.#base = `${url.protocol}//${url.host}`;
    this.#headers = options.token === undefined ? {} : { 'x-consul-token': options.token };
    const t = options.agentTls;
    const tls =
      url.protocol === 'https:'
        ? {
            ca: t?.ca === undefined ? undefined : readFileSync(t.ca),
            cert: t?.cert === undefined ? undefined : readFileSync(t.cert),
            key: t?.key === undefined ? undefined : readFileSync(t.key),
          }
        : {};
    this.#dispatcher = new ControlAgent({ connectTimeoutMs: 5000, tls });
  }

  async start(): Promise<void> {
    const [roots, leaf] = await Promise.all([
      this.#get<RootsAnswer>('/v1/agent/connect/ca/roots', 0, undefined),
      this.#get<LeafAnswer>(this.#leafPath(), 0, undefined),
    ]);
    this.#material = this.#build(leaf.value, roots.value);
    this.#roots = roots.value;
    this.#leaf = leaf.value;
    this.#scheduleRenewal();
    void this.#loop('roots', roots.index);
    void this.#loop('leaf', leaf.index);
  }

  current(): TlsMaterial {
    if (this.#material === null) throw new Error('consul TLS source not started');
    return this.#material;
  }

  onChange(listener: (material: TlsMaterial) => void): () => void {
    return this.#listeners.add(listener);
  }

  async authorize(caller: WorkloadIdentity, serial: string): Promise<AuthorizeResult> {
    const now = Date.now();
    const cached = this.#decisions.get(caller.uri);
    if (cached !== undefined && now - cached.at < (this.#o.authorizeCacheMs ?? 1000)) return cached.result;
    try {
      const res = await request(`${this.#base}/v1/agent/connect/authorize`, {
        method: 'POST',
        dispatcher: this.#dispatcher,
        headers: { ...this.#headers, 'content-type': 'application/json' },
        body: JSON.stringify({
          Target: this.#o.service,
          ClientCertURI: caller.uri,
          ClientCertSerial: serial,
        }),
        headersTimeout: 5000,
        bodyTimeout: 5000,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`Consul answered ${res.statusCode}: ${text.slice(0, 200)}`);
      const body = JSON.parse(text) as { Authorized: boolean; Reason: string };
      const result = { allowed: body.Authorized === true, reason: `intentions: ${body.Reason}` };
      if (this.#decisions.size > 10_000) this.#decisions.clear();
      this.#decisions.set(caller.uri, { result, at: now });
      return result;
    } catch (err) {
      if (cached !== undefined && now - cached.at < (this.#o.authorizeStaleMs ?? 60_000))
        return cached.result;
      throw err;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#leafAbort?.abort();
    this.#rootsAbort?.abort();
    if (this.#renewTimer !== null) clearTimeout(this.#renewTimer);
    await this.#dispatcher.close().catch(() => undefined);
  }

  #leafPath(): string {
    return `/v1/agent/connect/ca/leaf/${encodeURIComponent(this.#o.service)}`;
  }

  /** One blocking-query loop; `what` says which answer it keeps. */
  async #loop(what: 'leaf' | 'roots', startIndex: number | undefined): Promise<void> {
    let index = startIndex ?? 0;
    let failures = 0;
    let lastStart = Number.NEGATIVE_INFINITY;
    const path = what === 'leaf' ? this.#leafPath() : '/v1/agent/connect/ca/roots';
    while (!this.#stopped) {
      const gap = lastStart + MIN_READ_INTERVAL_MS - performance.now();
      if (gap > 0) await new Promise((r) => setTimeout(r, gap).unref());
      if (this.#stopped) return;
      lastStart = performance.now();
      const abort = new AbortController();
      if (what === 'leaf') this.#leafAbort = abort;
      else this.#rootsAbort = abort;
      try {
        const answer = await this.#get<LeafAnswer | RootsAnswer>(path, index, abort.signal);
        if (this.#stopped) return;
        // Applied before the index moves: a refused answer is asked again from the same index.
        if (what === 'leaf') this.#setLeaf(answer.value as LeafAnswer);
        else this.#setRoots(answer.value as RootsAnswer);
        failures = 0;
        // An index that went backwards (agent restart, snapshot restore) restarts from 0; an
        // answer without one keeps blocking on the last index (never 0 after an answer).
        if (answer.index === undefined) index = Math.max(1, index);
        else index = answer.index < index ? 0 : answer.index;
      } catch (err) {
        if (this.#stopped) return;
        if (abort.signal.aborted) {
          index = 0; // a renewal cancelled the query: fetch at once
          continue;
        }
        failures++;
        const base = this.#o.backoffBaseMs ?? 500;
        const delay = Math.min(this.#o.backoffMaxMs ?? 30_000, base * 2 ** Math.min(failures - 1, 10));
        this.#o.metrics.reloads.labels('consul', 'failed').inc();
        this.#o.logger.warn({
          msg:
            err instanceof UnusableAnswerError
              ? `consul connect ${what} refused; keeping the current certificate and roots, retrying`
              : `consul connect ${what} fetch failed; retrying`,
          reason: (err as Error).message,
          retryInMs: delay,
        });
        await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random() / 2)).unref());
      }
    }
  }

  /** Applies a leaf answer; throws {@link UnusableAnswerError} (keeping everything as it was) when it cannot be served. */
  #setLeaf(leaf: LeafAnswer): void {
    const old = this.#leaf;
    if (old !== null && old.CertPEM === leaf?.CertPEM && old.PrivateKeyPEM === leaf.PrivateKeyPEM) {
      this.#scheduleRenewal();
      return;
    }
    const next = this.#build(leaf, this.#roots!);
    this.#leaf = leaf;
    this.#apply(next);
    this.#scheduleRenewal();
  }

  /** Applies a roots answer; throws {@link UnusableAnswerError} (keeping everything as it was) when it cannot be served. */
  #setRoots(roots: RootsAnswer): void {
    const old = this.#roots;
    if (old !== null && JSON.stringify(old.Roots) === JSON.stringify(roots?.Roots)) return;
    const next = this.#build(this.#leaf!, roots);
    this.#roots = roots;
    this.#apply(next);
  }

  #apply(next: TlsMaterial): void {
    this.#material = next;
    this.#listeners.emit(next);
  }

  /** At 90 % of the leaf's lifetime (or soon after, while it is not replaced), cancel the query and re-fetch. */
  #scheduleRenewal(): void {
    if (this.#renewTimer !== null) clearTimeout(this.#renewTimer);
    const leaf = this.#leaf;
    if (leaf === null || this.#stopped) return;
    const after = Date.parse(leaf.ValidAfter);
    const before = Date.parse(leaf.ValidBefore);
    const renewAt = after + (before - after) * RENEW_AT;
    const now = Date.now();
    const delay = renewAt > now ? renewAt - now : Math.min(5000, Math.max(200, (before - now) / 10));
    this.#renewTimer = setTimeout(
      () => {
        this.#renewTimer = null;
        if (Date.now() >= before - (before - after) * (1 - RENEW_AT)) {
          this.#o.logger.info({
            msg: 'consul connect leaf near expiry; fetching a new one',
            validBefore: leaf.ValidBefore,
          });
        }
        this.#leafAbort?.abort();
      },
      Math.max(1, delay),
    );
    this.#renewTimer.unref();
  }

  /**
   * The material of `leaf` with `roots`, checked as far as a TLS server and its peers will: the PEM
   * parses, the key matches the certificate, the certificate names this service and has not
   * expired, and node:tls accepts the three together. Throws {@link UnusableAnswerError} otherwise.
   */
  #build(leaf: LeafAnswer, roots: RootsAnswer): TlsMaterial {
    try {
      if (typeof leaf?.CertPEM !== 'string' || typeof leaf.PrivateKeyPEM !== 'string')
        throw new Error('leaf answer without CertPEM and PrivateKeyPEM');
      if (!Number.isFinite(Date.parse(leaf.ValidAfter)) || !Number.isFinite(Date.parse(leaf.ValidBefore)))
        throw new Error('leaf answer without a valid ValidAfter and ValidBefore');
      if (!Array.isArray(roots?.Roots) || roots.Roots.length === 0)
        throw new Error('roots answer without Roots');
      const ca = roots.Roots.map((r) => [r.RootCert, ...(r.IntermediateCerts ?? [])].join('\n')).join('\n');
      const material = tlsMaterial(
        leaf.CertPEM,
        leaf.PrivateKeyPEM,
        ca,
        this.#o.trustDomain ?? roots.TrustDomain,
      );
      checkKeyMatchesCertificate(leaf.CertPEM, leaf.PrivateKeyPEM, {
        cert: 'leaf CertPEM',
        key: 'leaf PrivateKeyPEM',
      });
      const named = material.cert.identity?.service;
      if (named !== this.#o.service) {
        throw new Error(`leaf certificate names ${named ?? 'no service'}, not ${this.#o.service}`);
      }
      if (material.cert.notAfter.getTime() <= Date.now()) {
        throw new Error(`leaf certificate expired at ${isoTime(material.cert.notAfter.getTime())}`);
      }
      createSecureContext({ cert: material.certPem, key: material.keyPem, ca: material.caPem });
      return material;
    } catch (err) {
      throw new UnusableAnswerError((err as Error).message);
    }
  }

  async #get<T>(
    path: string,
    index: number,
    signal: AbortSignal | undefined,
  ): Promise<{ value: T; index: number | undefined }> {
    const waitMs = this.#o.waitMs ?? 300_000;
    const query = index > 0 ? `?index=${index}&wait=${waitMs}ms` : '';
    const res = await request(`${this.#base}${path}${query}`, {
      dispatcher: this.#dispatcher,
      headers: this.#headers,
      signal,
      headersTimeout: waitMs + Math.ceil(waitMs / 16) + 5000,
      bodyTimeout: 30_000,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200)
      throw new Error(`Consul answered ${res.statusCode} on ${path}: ${text.slice(0, 200)}`);
    const raw = res.headers['x-consul-index'];
    const n = Number(Array.isArray(raw) ? raw[0] : raw);
    return { value: JSON.parse(text) as T, index: Number.isFinite(n) && n > 0 ? n : undefined };
  }
}
