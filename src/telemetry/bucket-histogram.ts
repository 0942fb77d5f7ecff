// A histogram whose children are plain bucket counters on the request path, read by prom-client's registry at scrape time.
import type { Metric, Registry } from 'prom-client';

/** One labelled child: cumulative nothing, just a count per bucket; the scrape sums them up. */
export class BucketCounts {
  /** Upper bounds, ascending (shared with the family). */
  readonly #bounds: readonly number[];
  /** Observations per bucket; the last slot is above every bound (`+Inf` only). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Records one value (in the family's unit, e.g. seconds). No allocation, no label lookup. */
  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]! += 1;
    this.sum += value;
    this.count += 1;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

interface ExportedValue {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

/**
 * A Prometheus histogram family that exports what prom-client's `Histogram` exports (`_bucket` with
 * `le`, `_sum`, `_count`, cumulative buckets, children that saw no observation left out) but whose
 * children are {@link BucketCounts}: an observation is a bucket scan and three additions, where
 * prom-client's bound child re-validates and re-hashes its labels on every call.
 */
export class BucketHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames: readonly L[];
  readonly #bounds: readonly number[];
  readonly #children = new Map<string, { labels: Record<L, string>; counts: BucketCounts }>();

  /**
   * @param options.buckets upper bounds, ascending, in the metric's unit.
   * @param options.registers registries to appear on.
   */
  constructor(options: {
    name: string;
    help: string;
    labelNames: readonly L[];
    buckets: readonly number[];
    registers: Registry[];
  }) {
    this.name = options.name;
    this.help = options.help;
    this.labelNames = options.labelNames;
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    for (const r of options.registers) r.registerMetric(this as unknown as Metric);
  }

  /** The child for these label values, made on first use; bind it once, outside the request path. */
  child(labels: Record<L, string>): BucketCounts {
    const key = this.labelNames.map((n) => labels[n]).join('\u0000');
    let c = this.#children.get(key);
    if (c === undefined) {
      c = { labels: { ...labels }, counts: new BucketCounts(this.#bounds) };
      this.#children.set(key, c);
    }
    return c.counts;
  }

  /** The family as prom-client's registry reads it (same shape as prom-client's `Histogram.get()`). */
  async get(): Promise<{
    name: string;
    help: string;
    type: 'histogram';
    values: ExportedValue[];
    aggregator: 'sum';
  }> {
    const values: ExportedValue[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const { labels, counts } of this.#children.values()) {
      if (counts.count === 0) continue;
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += counts.counts[i]!;
        values.push({ labels: { le: this.#bounds[i]!, ...labels }, value: acc, metricName: bucketName });
      }
      values.push(
        { labels: { le: '+Inf', ...labels }, value: counts.count, metricName: bucketName },
        { labels: { ...labels }, value: counts.sum, metricName: `${this.name}_sum` },
        { labels: { ...labels }, value: counts.count, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** Drops the children whose labels `match` (a removed upstream's); a later `child()` starts them anew. */
  removeWhere(match: (labels: Readonly<Record<L, string>>) => boolean): void {
    for (const [key, c] of this.#children) if (match(c.labels)) this.#children.delete(key);
  }

  /** Zeroes every child (what `Registry.resetMetrics()` calls). */
  reset(): void {
    for (const c of this.#children.values()) c.counts.reset();
  }
}
