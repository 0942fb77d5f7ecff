// Every PromQL query the Consul UI's built-in Prometheus provider issues for one service, rebuilt from its source.
//
// Source: hashicorp/consul ui/packages/consul-ui/vendor/metrics-providers/prometheus.js (the
// `consul_source_*` / `envoy_http_conn_manager_prefix="public_listener"|"upstream"` version, Consul
// ≥ 1.10). For an L7 service (`http`, `http2`, `grpc`) the topology view asks for: the service's
// chart (`serviceRecentSummarySeries`), its four stats RPS/ER/P50/P99 (`serviceRecentSummaryStats`),
// and for upstreams and downstreams all eight stats (HTTP and L4), grouped by service.

/** One query as the provider sends it. */
export interface UiQuery {
  service: string;
  type: 'service' | 'upstream' | 'downstream';
  stat: 'chart' | 'RPS' | 'ER' | 'P50' | 'P99' | 'CR' | 'RX' | 'TX' | 'NR';
  /** An L4 (tcp) stat. */
  l4: boolean;
  promql: string;
}

type Kind = UiQuery['type'];

function httpSelector(s: string, dc: string, ns: string, type: Kind): string {
  if (type === 'downstream')
    return `consul_destination_service="${s}",consul_destination_datacenter="${dc}",consul_destination_namespace="${ns}"`;
  const src = `consul_source_service="${s}",consul_source_datacenter="${dc}",consul_source_namespace="${ns}"`;
  return `${src},envoy_http_conn_manager_prefix="${type === 'upstream' ? 'upstream' : 'public_listener'}"`;
}

function tcpSelector(s: string, dc: string, ns: string, type: Kind): string {
  if (type === 'downstream')
    return `consul_destination_service="${s}",consul_destination_datacenter="${dc}",consul_destination_namespace="${ns}"`;
  const src = `consul_source_service="${s}",consul_source_datacenter="${dc}",consul_source_namespace="${ns}"`;
  return type === 'upstream'
    ? `${src},envoy_tcp_prefix=~"upstream.*"`
    : `${src},envoy_tcp_prefix="public_listener"`;
}

const UP_GROUP = ' by (consul_upstream_service,consul_upstream_datacenter,consul_upstream_namespace)';
const DOWN_GROUP = ' by (consul_source_service,consul_source_datacenter,consul_source_namespace)';
const group = (type: Kind): string =>
  type === 'upstream' ? UP_GROUP : type === 'downstream' ? DOWN_GROUP : '';
const httpPrefix = (type: Kind): string =>
  type === 'downstream' ? 'envoy_cluster_upstream_rq' : 'envoy_http_downstream_rq';
const tcpPrefix = (type: Kind): string =>
  type === 'downstream' ? 'envoy_cluster_upstream_cx' : 'envoy_tcp_downstream_cx';
/** Ungrouped (service) stats get `OR on() vector(0)` so a missing stat reads 0. */
const stat = (type: Kind, q: string): string => (type === 'service' ? `${q} OR on() vector(0)` : q);

/** The L7 queries of one kind (RPS, ER, P50, P99). */
function httpStats(s: string, dc: string, ns: string, type: Kind): UiQuery[] {
  const sel = httpSelector(s, dc, ns, type);
  const m = httpPrefix(type);
  const g = group(type);
  const pctBy =
    type === 'upstream'
      ? `le,${UP_GROUP.slice(5, -1)}`
      : type === 'downstream'
        ? `le,${DOWN_GROUP.slice(5, -1)}`
        : 'le';
  const pct = (p: number): string =>
    `histogram_quantile(${p / 100}, sum by(${pctBy}) (rate(${m}_time_bucket{${sel}}[15m])))`;
  return [
    {
      service: s,
      type,
      stat: 'RPS',
      l4: false,
      promql: stat(type, `sum(rate(${m}_completed{${sel}}[15m]))${g}`),
    },
    {
      service: s,
      type,
      stat: 'ER',
      l4: false,
      promql: stat(
        type,
        `sum(rate(${m}_xx{${sel},envoy_response_code_class="5"}[15m]))${g}/sum(rate(${m}_xx{${sel}}[15m]))${g}`,
      ),
    },
    { service: s, type, stat: 'P50', l4: false, promql: stat(type, pct(50)) },
    { service: s, type, stat: 'P99', l4: false, promql: stat(type, pct(99)) },
  ];
}

/** The L4 queries of one kind (CR, RX, TX, NR). */
function tcpStats(s: string, dc: string, ns: string, type: Kind): UiQuery[] {
  const sel = tcpSelector(s, dc, ns, type);
  const m = tcpPrefix(type);
  const g = group(type);
  const nr = type === 'downstream' ? '_connect_fail' : '_no_route';
  return [
    { service: s, type, stat: 'CR', l4: true, promql: stat(type, `sum(rate(${m}_total{${sel}}[15m]))${g}`) },
    {
      service: s,
      type,
      stat: 'RX',
      l4: true,
      promql: stat(type, `8 * sum(rate(${m}_rx_bytes_total{${sel}}[15m]))${g}`),
    },
    {
      service: s,
      type,
      stat: 'TX',
      l4: true,
      promql: stat(type, `8 * sum(rate(${m}_tx_bytes_total{${sel}}[15m]))${g}`),
    },
    { service: s, type, stat: 'NR', l4: true, promql: stat(type, `sum(rate(${m}${nr}{${sel}}[15m]))${g}`) },
  ];
}

/** Every query the topology view issues for an L7 service `s` in datacenter `dc`, namespace `ns`. */
export function consulUiQueries(s: string, dc: string, ns: string): UiQuery[] {
  const chart =
    `sum by (label) (label_replace(label_replace(irate(envoy_listener_http_downstream_rq_xx{` +
    `consul_source_service="${s}",consul_source_datacenter="${dc}",consul_source_namespace="${ns}",` +
    `envoy_http_conn_manager_prefix="public_listener"}[10m]), "label", "Successes", "envoy_response_code_class", "[^5]"), ` +
    `"label", "Errors", "envoy_response_code_class", "5"))`;
  return [
    { service: s, type: 'service', stat: 'chart', l4: false, promql: chart },
    ...httpStats(s, dc, ns, 'service'),
    ...httpStats(s, dc, ns, 'upstream'),
    ...tcpStats(s, dc, ns, 'upstream'),
    ...httpStats(s, dc, ns, 'downstream'),
    ...tcpStats(s, dc, ns, 'downstream'),
  ];
}
