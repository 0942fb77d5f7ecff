// Drops a removed upstream's labelled series from every family of a registry, as Envoy drops a removed cluster's stats.
import type { Metric, Registry } from 'prom-client';
import { BucketHistogram } from './bucket-histogram.ts';

/** Labels of one prom-client child, as its `hashMap` holds them. */
type ChildLabels = Record<string, string | number>;

/**
 * What prom-client 15's Counter, Gauge, Histogram and Summary keep per child: `hashMap` (hash →
 * `{labels, value}`). Not in its typings; a family without it is left alone.
 */
interface LabelledFamily {
  readonly name: string;
  readonly labelNames?: readonly string[];
  readonly hashMap?: Record<string, { labels: ChildLabels; value?: number }>;
  remove(labels: ChildLabels): void;
}

/**
 * A gauge child that still counts something alive is kept: a tunnel open through the upstream when
 * it was removed decrements its own child when it ends, and a dropped child would turn negative.
 */
const KEEP_WHILE_NONZERO: ReadonlySet<string> = new Set(['meshlet_tunnels_active']);

/** The outbound upstream a child is labelled with; undefined for an inbound child or one without `upstream`. */
function outboundUpstreamOf(labels: Readonly<Record<string, string | number>>): string | undefined {
  const upstream = labels.upstream;
  return typeof upstream === 'string' && labels.direction !== 'inbound' ? upstream : undefined;
}

/**
 * Removes every child labelled `upstream="NAME"` (outbound; the inbound listener's children, labelled
 * with this service's name, stay) from every family of `registry`: prom-client's families and
 * {@link BucketHistogram}s. Families derived at scrape time from other state (the request counters,
 * the Consul UI series) are not touched here; their owner drops that state. O(children) per call:
 * for an upstream's removal, never the request path.
 * @returns the number of children removed.
 */
export function dropUpstreamSeries(registry: Registry, upstream: string): number {
  return dropSeriesWhere(registry, (name) => name === upstream);
}

/**
 * Removes every outbound child whose `upstream` label `stale` says is gone, from every family of
 * `registry`, as {@link dropUpstreamSeries} does for one name; a `meshlet_tunnels_active` child
 * still counting an open tunnel is kept (it goes once the tunnel has ended). O(children) per call.
 * @returns the number of children removed.
 */
export function dropSeriesWhere(registry: Registry, stale: (upstream: string) => boolean): number {
  let removed = 0;
  const hit = (labels: Readonly<Record<string, string | number>>): boolean => {
    const upstream = outboundUpstreamOf(labels);
    return upstream !== undefined && stale(upstream);
  };
  for (const metric of registry.getMetricsAsArray() as unknown[]) {
    if (metric instanceof BucketHistogram) {
      metric.removeWhere((labels) => {
        const drop = hit(labels);
        if (drop) removed++;
        return drop;
      });
      continue;
    }
    const family = metric as Metric & LabelledFamily;
    if (family.hashMap === undefined || family.labelNames?.includes('upstream') !== true) continue;
    const keepLive = KEEP_WHILE_NONZERO.has(family.name);
    for (const child of Object.values(family.hashMap)) {
      if (!hit(child.labels)) continue;
      if (keepLive && child.value !== 0) continue;
      family.remove(child.labels);
      removed++;
    }
  }
  return removed;
}
