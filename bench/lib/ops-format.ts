// How micro-benchmark rates are printed: millions of operations a second, readable for slow inputs too.

/** ops/s in millions: two decimals, or three significant digits below 1 M (a 40 KB input's 0.00312). */
export function millions(opsPerSec: number): string {
  const m = opsPerSec / 1e6;
  return m >= 1 || !Number.isFinite(m) ? m.toFixed(2) : m.toPrecision(3);
}
