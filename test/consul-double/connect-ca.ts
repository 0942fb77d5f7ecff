// The double's Connect CA: a real EC P-256 root, SPIFFE leaf certificates per service, rotation, intentions.
import { randomUUID } from 'node:crypto';
import { X509Certificate } from 'node:crypto';
import { createDevCa, type DevCa, issueLeaf } from '../../src/tls/dev-ca.ts';
import { parseSpiffeId } from '../../src/tls/identity.ts';

/** One root CA as `/v1/agent/connect/ca/roots` lists it. */
interface RootRecord {
  id: string;
  ca: DevCa;
  serial: number;
  active: boolean;
  createIndex: number;
  notBefore: Date;
  notAfter: Date;
}

/** One leaf as `/v1/agent/connect/ca/leaf/:service` returns it. */
export interface LeafRecord {
  service: string;
  serviceUri: string;
  certPem: string;
  keyPem: string;
  serialNumber: string;
  validAfter: Date;
  validBefore: Date;
  index: number;
}

/** An intention: may `source` call `destination`? `*` matches any name. */
export interface Intention {
  source: string;
  destination: string;
  action: 'allow' | 'deny';
}

/** Options of the Connect CA. */
export interface ConnectCaOptions {
  datacenter: string;
  /** Leaf validity, ms. Default 72 h (Consul's `leaf_cert_ttl`). */
  leafTtlMs?: number;
  /** Answer of `authorize` when no intention matches. Default allow (ACL default policy allow). */
  defaultAllow?: boolean;
}

/**
 * Consul's built-in CA in small: the trust domain is `<cluster-id>.consul`; leaves carry the SPIFFE
 * ID `spiffe://<td>/ns/default/dc/<dc>/svc/<service>` and are re-issued (a) on `rotateLeaf`, (b) on
 * `rotateRoot` and (c) when a request arrives after 90 % of a leaf's lifetime (the agent's renewal).
 * Every change bumps one index and wakes blocked roots and leaf queries.
 */
export class ConnectCa {
  readonly clusterId = randomUUID();
  readonly trustDomain = `${this.clusterId}.consul`;
  readonly #options: ConnectCaOptions;
  #roots: RootRecord[] = [];
  #rootsIndex = 0;
  readonly #leaves = new Map<string, LeafRecord>();
  #index = 1;
  #ready: Promise<void> | null = null;
  readonly #waiters = new Set<() => void>();
  intentions: Intention[] = [];
  /** When true, leaf blocking queries hold for their whole wait whatever happens (a stuck agent cache). */
  holdLeafQueries = false;
  defaultAllow: boolean;
  leafTtlMs: number;

  constructor(options: ConnectCaOptions) {
    this.#options = options;
    this.defaultAllow = options.defaultAllow ?? true;
    this.leafTtlMs = options.leafTtlMs ?? 72 * 3_600_000;
  }

  /** The current index (every CA change bumps it). */
  get index(): number {
    return this.#index;
  }

  /** Creates the first root on first use. */
  ready(): Promise<void> {
    this.#ready ??= this.#addRoot();
    return this.#ready;
  }

  /** The active root CA (for tests that issue their own certificates). */
  get activeRoot(): DevCa {
    const r = this.#roots.find((x) => x.active);
    if (r === undefined) throw new Error('Connect CA not initialised');
    return r.ca;
  }

  /** The roots answer, Consul's field names. */
  rootsAnswer(): { index: number; value: unknown } {
    const active = this.#roots.find((r) => r.active)!;
    return {
      index: this.#rootsIndex,
      value: {
        ActiveRootID: active.id,
        TrustDomain: this.trustDomain,
        Roots: this.#roots.map((r) => ({
          ID: r.id,
          Name: 'Consul CA Primary Cert',
          SerialNumber: r.serial,
          SigningKeyID: r.id,
          ExternalTrustDomain: this.clusterId,
          NotBefore: r.notBefore.toISOString(),
          NotAfter: r.notAfter.toISOString(),
          RootCert: r.ca.certPem,
          IntermediateCerts: null,
          Active: r.active,
          PrivateKeyType: 'ec',
          PrivateKeyBits: 256,
          CreateIndex: r.createIndex,
          ModifyIndex: r.createIndex,
        })),
      },
    };
  }

  /** The leaf of `service`, issued now when absent or past 90 % of its lifetime. */
  async leaf(service: string): Promise<LeafRecord> {
    await this.ready();
    const leaf = this.#leaves.get(service);
    if (leaf !== undefined) {
      const life = leaf.validBefore.getTime() - leaf.validAfter.getTime();
      if (Date.now() < leaf.validAfter.getTime() + life * 0.9) return leaf;
    }
    return this.#issue(service);
  }

  /** The leaf answer, Consul's field names. */
  static leafAnswer(leaf: LeafRecord): unknown {
    return {
      SerialNumber: leaf.serialNumber.toLowerCase().replace(/(..)(?!$)/g, '$1:'),
      CertPEM: leaf.certPem,
      PrivateKeyPEM: leaf.keyPem,
      Service: leaf.service,
      ServiceURI: leaf.serviceUri,
      ValidAfter: leaf.validAfter.toISOString(),
      ValidBefore: leaf.validBefore.toISOString(),
      CreateIndex: leaf.index,
      ModifyIndex: leaf.index,
    };
  }

  /** Issues a new leaf for `service` (rotation), waking its blocked queries. */
  async rotateLeaf(service: string): Promise<LeafRecord> {
    await this.ready();
    return this.#issue(service);
  }

  /** Makes a new active root (the old stays listed, inactive) and re-issues every leaf. */
  async rotateRoot(): Promise<void> {
    await this.ready();
    await this.#addRoot();
    for (const service of [...this.#leaves.keys()]) await this.#issue(service);
  }

  /** Consul's `POST /v1/agent/connect/authorize` decision. */
  authorize(target: string, clientCertUri: string): { Authorized: boolean; Reason: string } {
    const id = parseSpiffeId(clientCertUri);
    if (id === undefined)
      return { Authorized: false, Reason: 'Client certificate URI is not a service identity' };
    if (id.trustDomain !== this.trustDomain) {
      return { Authorized: false, Reason: 'Client certificate is from a different trust domain' };
    }
    const exact = (i: Intention) => i.source === id.service && i.destination === target;
    const wildSource = (i: Intention) => i.source === '*' && i.destination === target;
    const wildAll = (i: Intention) => i.source === '*' && i.destination === '*';
    for (const test of [exact, wildSource, wildAll]) {
      const hit = this.intentions.find(test);
      if (hit !== undefined) {
        return {
          Authorized: hit.action === 'allow',
          Reason: `Matched L4 intention: ${hit.source} => ${hit.destination} (${hit.action})`,
        };
      }
    }
    return { Authorized: this.defaultAllow, Reason: 'Default behavior configured by ACLs' };
  }

  /** Replaces the intentions (wakes nothing: authorize is not a blocking query). */
  setIntentions(list: Intention[]): void {
    this.intentions = list.map((i) => ({ ...i }));
  }

  /**
   * Resolves when the index passes `minIndex`, `waitMs` elapsed or `cancelled` settled. For the
   * roots and leaf blocking queries.
   */
  wait(minIndexReached: () => boolean, waitMs: number, cancelled: Promise<void>): Promise<void> {
    if (minIndexReached()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const check = (): void => {
        if (minIndexReached()) done();
      };
      const timer = setTimeout(done, waitMs);
      this.#waiters.add(check);
      void cancelled.then(done);
    });
  }

  #bump(): number {
    this.#index += 1;
    for (const w of [...this.#waiters]) w();
    return this.#index;
  }

  async #addRoot(): Promise<void> {
    const ca = await createDevCa({ trustDomain: this.trustDomain });
    const x = new X509Certificate(ca.certPem);
    for (const r of this.#roots) r.active = false;
    this.#roots.push({
      id: x.fingerprint.toLowerCase(),
      ca,
      serial: this.#roots.length + 1,
      active: true,
      createIndex: this.#index + 1,
      notBefore: x.validFromDate,
      notAfter: x.validToDate,
    });
    this.#rootsIndex = this.#bump();
  }

  async #issue(service: string): Promise<LeafRecord> {
    const dc = this.#options.datacenter;
    const now = Date.now();
    const issued = await issueLeaf({
      ca: this.activeRoot,
      service,
      trustDomain: this.trustDomain,
      namespace: 'default',
      datacenter: dc,
      notBefore: new Date(now - Math.min(60_000, this.leafTtlMs / 10)),
      notAfter: new Date(now + this.leafTtlMs),
    });
    const x = new X509Certificate(issued.certPem);
    const leaf: LeafRecord = {
      service,
      serviceUri: issued.spiffeId,
      certPem: issued.certPem,
      keyPem: issued.keyPem,
      serialNumber: issued.serialNumber,
      validAfter: x.validFromDate,
      validBefore: x.validToDate,
      index: 0,
    };
    this.#leaves.set(service, leaf);
    leaf.index = this.#bump();
    return leaf;
  }
}
