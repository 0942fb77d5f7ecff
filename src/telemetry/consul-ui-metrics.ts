// The Envoy-named series the Consul UI's Prometheus provider queries, derived at scrape time from meshlet's own counters.
import type { Metric, Registry } from 'prom-client';
import { LATENCY_BUCKETS, type Metrics, type UpstreamMetrics } from './metrics.ts';

/**
 * Who this meshlet is in Consul's terms: the labels Consul's Envoy bootstrap puts on every series
 * (`consul_source_*` = the local service) and the datacenter of each upstream.
 */
export interface ConsulUiIdentity {
  /** The local service (`service.name`). */
  service: string;
  /** The local service's datacenter (the agent's own unless `registry.consul.datacenter` says). */
  datacenter: string;
  /** Consul namespace; `default` outside Consul Enterprise. */
  namespace: string;
  /** The datacenter an upstream is discovered in (its filter's, else `datacenter`). */
  upstreamDatacenter(upstream: string): string;
}

/**
 * Every series name and label this module exports, in the provider's terms. The provider
 * (hashicorp/consul `ui/packages/consul-ui/vendor/metrics-providers/prometheus.js`) selects on
 * exactly these; test/observability keeps the list against its queries.
 */
export const CONSUL_UI_SERIES = {
  /** Inbound (`public_listener`) and outbound (`upstream`) request counts, by meshlet's listener. */
  httpCompleted: 'envoy_http_downstream_rq_completed',
  httpXx: 'envoy_http_downstream_rq_xx',
  listenerXx: 'envoy_listener_http_downstream_rq_xx',
  /** Histogram in milliseconds (Envoy's `downstream_rq_time`). */
  httpTime: 'envoy_http_downstream_rq_time',
  /** The caller's view of each upstream (`consul_destination_*`), which the callee's "downstreams" read. */
  clusterCompleted: 'envoy_cluster_upstream_rq_completed',
  clusterXx: 'envoy_cluster_upstream_rq_xx',
  clusterTime: 'envoy_cluster_upstream_rq_time',
} as const;

/** Latency bucket bounds in milliseconds, as Envoy's `_time` histograms use: meshlet's, × 1000. */
export const CONSUL_UI_BUCKETS_MS = LATENCY_BUCKETS.map((s) => Math.round(s * 1e6) / 1e3);

/** `envoy_response_code_class` values: Envoy's `1`…`5` (the status's first digit), index = class. */
const CODE_CLASSES = ['', '1', '2', '3', '4', '5'] as const;

type Labels = Record<string, string | number>;
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** One exported family, shaped the way prom-client's registry reads a metric. */
class DerivedFamily {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames: string[] = [];
  readonly #read: () => Sample[];

  constructor(name: string, help: string, type: 'counter' | 'histogram', read: () => Sample[]) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.#read = read;
  }

  get(): Promise<{ name: string; help: string; type: string; values: Sample[]; aggregator: 'sum' }> {
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      values: this.#read(),
      aggregator: this.aggregator,
    });
  }

  reset(): void {}
}

/** The rows of one scrape: which listener, what its labels are, and the counters behind them. */
interface Row {
  m: UpstreamMetrics;
  /** Labels of the `envoy_http_downstream_*` and listener series. */
  http: Labels;
  /** Labels of the `envoy_cluster_upstream_*` series (outbound rows only). */
  cluster: Labels | null;
}

/**
 * The Consul UI's view of a meshlet, as Envoy series with Consul's bootstrap labels:
 * - inbound (the mTLS listener, what the app's callers reach): `envoy_http_downstream_rq_*` and
 *   `envoy_listener_http_downstream_rq_xx` with `envoy_http_conn_manager_prefix="public_listener"`
 *   and `consul_source_service/datacenter/namespace` = this service;
 * - outbound, per upstream: the same `envoy_http_downstream_rq_*` with
 *   `envoy_http_conn_manager_prefix="upstream"` and `consul_upstream_*` = the upstream, and
 *   `envoy_cluster_upstream_rq_*` with `consul_destination_*` = the upstream and `consul_source_*`
 *   = this service (the callee's "downstreams" panel reads these from its callers).
 *
 * Nothing is counted on the request path: every value is read from {@link UpstreamMetrics} when
 * `/metrics` is scraped. So the cluster series count requests, not attempts (Envoy's count each
 * retry; meshlet's retries are in `meshlet_retries_total`). Rows appear at 0 as soon as the upstream
 * or the inbound listener exists, as Envoy's counters do, so a first burst is not lost to `rate()`.
 */
export class ConsulUiMetrics {
  readonly #metrics: Metrics;
  readonly #identity: () => ConsulUiIdentity | null;
  readonly #families: DerivedFamily[];
  #registry: Registry | null = null;

  /** @param identity read at every scrape; null (datacenter not known yet) exports nothing. */
  constructor(metrics: Metrics, identity: () => ConsulUiIdentity | null) {
    this.#metrics = metrics;
    this.#identity = identity;
    const S = CONSUL_UI_SERIES;
    this.#families = [
      new DerivedFamily(
        S.httpCompleted,
        'Envoy-named (Consul UI): requests completed on a listener.',
        'counter',
        () => this.#rows().map((r) => ({ labels: r.http, value: total(r.m) })),
      ),
      new DerivedFamily(
        S.httpXx,
        'Envoy-named (Consul UI): responses by status class on a listener.',
        'counter',
        () => this.#rows().flatMap((r) => byClass(r.m, r.http)),
      ),
      new DerivedFamily(
        S.listenerXx,
        'Envoy-named (Consul UI): responses by status class per listener.',
        'counter',
        () => this.#rows().flatMap((r) => byClass(r.m, r.http)),
      ),
      new DerivedFamily(
        S.httpTime,
        'Envoy-named (Consul UI): request duration on a listener, in milliseconds.',
        'histogram',
        () => this.#rows().flatMap((r) => histogram(S.httpTime, r.m, r.http)),
      ),
      new DerivedFamily(
        S.clusterCompleted,
        'Envoy-named (Consul UI): requests completed to an upstream.',
        'counter',
        () => this.#clusterRows().map((r) => ({ labels: r.cluster!, value: total(r.m) })),
      ),
      new DerivedFamily(
        S.clusterXx,
        'Envoy-named (Consul UI): responses from an upstream by status class.',
        'counter',
        () => this.#clusterRows().flatMap((r) => byClass(r.m, r.cluster!)),
      ),
      new DerivedFamily(
        S.clusterTime,
        'Envoy-named (Consul UI): request duration to an upstream, in milliseconds.',
        'histogram',
        () => this.#clusterRows().flatMap((r) => histogram(S.clusterTime, r.m, r.cluster!)),
      ),
    ];
  }

  /** Adds the families to `registry` (once). */
  register(registry: Registry): void {
    if (this.#registry !== null) return;
    for (const f of this.#families) registry.registerMetric(f as unknown as Metric);
    this.#registry = registry;
  }

  /** Removes them again (registry stopped). */
  unregister(): void {
    for (const f of this.#families) this.#registry?.removeSingleMetric(f.name);
    this.#registry = null;
  }

  #rows(): Row[] {
    const id = this.#identity();
    if (id === null) return [];
    const source = {
      consul_source_service: id.service,
      consul_source_datacenter: id.datacenter,
      consul_source_namespace: id.namespace,
    };
    const rows: Row[] = [];
    for (const m of this.#metrics.upstreamMetrics()) {
      if (m.direction === 'inbound') {
        rows.push({
          m,
          http: { envoy_http_conn_manager_prefix: 'public_listener', ...source },
          cluster: null,
        });
      } else if (m.upstream !== '') {
        const dc = id.upstreamDatacenter(m.upstream);
        rows.push({
          m,
          http: {
            envoy_http_conn_manager_prefix: 'upstream',
            ...source,
            consul_upstream_service: m.upstream,
            consul_upstream_datacenter: dc,
            consul_upstream_namespace: id.namespace,
          },
          cluster: {
            consul_destination_service: m.upstream,
            consul_destination_datacenter: dc,
            consul_destination_namespace: id.namespace,
            ...source,
          },
        });
      }
    }
    return rows;
  }

  #clusterRows(): Row[] {
    return this.#rows().filter((r) => r.cluster !== null);
  }
}

function total(m: UpstreamMetrics): number {
  let n = 0;
  for (let i = 1; i < m.requests.length; i++) n += m.requests[i]!;
  return n;
}

function byClass(m: UpstreamMetrics, labels: Labels): Sample[] {
  const out: Sample[] = [];
  for (let i = 1; i < CODE_CLASSES.length; i++) {
    out.push({ labels: { ...labels, envoy_response_code_class: CODE_CLASSES[i]! }, value: m.requests[i]! });
  }
  return out;
}

/** The per-class second histograms summed into one, bounds in milliseconds. */
function histogram(name: string, m: UpstreamMetrics, labels: Labels): Sample[] {
  const buckets = new Float64Array(CONSUL_UI_BUCKETS_MS.length + 1);
  let sum = 0;
  let count = 0;
  const durations = m.durations;
  // Index 0 is the same child as index 1 (status classes start at 1).
  for (let c = 1; c < durations.length; c++) {
    const d = durations[c]!;
    for (let i = 0; i < buckets.length; i++) buckets[i]! += d.counts[i]!;
    sum += d.sum;
    count += d.count;
  }
  const out: Sample[] = [];
  let acc = 0;
  for (let i = 0; i < CONSUL_UI_BUCKETS_MS.length; i++) {
    acc += buckets[i]!;
    out.push({
      labels: { ...labels, le: CONSUL_UI_BUCKETS_MS[i]! },
      value: acc,
      metricName: `${name}_bucket`,
    });
  }
  out.push(
    { labels: { ...labels, le: '+Inf' }, value: count, metricName: `${name}_bucket` },
    { labels, value: sum * 1000, metricName: `${name}_sum` },
    { labels, value: count, metricName: `${name}_count` },
  );
  return out;
}
