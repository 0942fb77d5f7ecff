// One instance of an upstream as discovery describes it (immutable), and its live per-endpoint state.

/** How a peer is reached: mTLS to its meshlet, or plain HTTP. */
export type EndpointTransport = 'mtls' | 'plain';

/** What an endpoint speaks (config `protocol`, Consul `Meta.meshlet_protocol`). */
export type EndpointProtocol = 'http1' | 'http2' | 'grpc';

/** One instance of an upstream, as a registry reported it. Immutable; a new snapshot replaces it. */
export interface Endpoint {
  /** `address:port`, unique within an upstream. */
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** Relative weight for weighted balancing; defaults to 1. */
  readonly weight: number;
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  /** Whether the endpoint's meshlet accepts mTLS; plain when discovery says nothing. */
  readonly transport: EndpointTransport;
  /** What the endpoint speaks, when discovery says (else the upstream's `protocol` applies). */
  readonly protocol: EndpointProtocol | undefined;
}

/** Builds an endpoint with defaults (weight 1, no tags, no meta, plain). */
export function makeEndpoint(address: string, port: number, extra: Partial<Endpoint> = {}): Endpoint {
  return Object.freeze({
    id: `${address.includes(':') ? `[${address}]` : address}:${port}`,
    address,
    port,
    weight: extra.weight ?? 1,
    tags: Object.freeze([...(extra.tags ?? [])]),
    meta: Object.freeze({ ...(extra.meta ?? {}) }),
    transport: extra.transport ?? 'plain',
    protocol: extra.protocol,
  });
}

/**
 * Live state of one endpoint inside an upstream: what balancers read (in-flight requests, latency
 * estimate) and what outlier detection writes (ejected or not). One handle lives as long as the
 * endpoint's id (`address:port`) stays in the upstream's snapshots, so its counters and ejection
 * survive snapshot swaps, including ones that change only its weight, tags, meta, transport or
 * protocol (as Envoy keeps a host across EDS updates of its metadata or weight).
 */
export class EndpointHandle {
  /**
   * The endpoint as discovery last described it. Replaced by the owning upstream (and only by it)
   * when a snapshot re-sends the same id with other fields; the id never changes.
   */
  endpoint: Endpoint;
  /** Requests in flight to this endpoint right now. */
  active = 0;
  /** Peak-EWMA latency estimate in milliseconds (maintained by the peak_ewma balancer). */
  ewmaMs = 0;
  /** Clock reading (ms) of the last EWMA update. */
  ewmaAtMs = 0;
  /** True while outlier detection has this endpoint ejected. */
  ejected = false;
  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }
}
