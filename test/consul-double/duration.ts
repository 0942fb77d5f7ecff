// Go-style durations as Consul reads and prints them ("10s", "1m30s", "500ms", "1h0m0s").

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/**
 * Parses a duration the way Go's `time.ParseDuration` does (Consul's `wait`, `TTL`, `Interval`, ...).
 * A bare number is accepted only when it is `0`, as in Go.
 * @returns milliseconds (may be fractional), or `undefined` when the text is not a Go duration.
 */
export function parseGoDuration(text: string): number | undefined {
  let s = text.trim();
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s.startsWith('-')) sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const at = PART.lastIndex;
    const m = PART.exec(s);
    if (m === null || m.index !== at) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return sign * total;
}

/**
 * Reads a duration from a decoded JSON body: a Go duration string, or a number of nanoseconds
 * (how Go's JSON decoding of `time.Duration` treats numbers).
 * @returns milliseconds; `0` for absent or empty; `undefined` when malformed.
 */
export function readDuration(value: unknown): number | undefined {
  if (value === undefined || value === null || value === '') return 0;
  if (typeof value === 'number') return Number.isFinite(value) ? value / 1e6 : undefined;
  if (typeof value === 'string') return parseGoDuration(value);
  return undefined;
}

function trimFloat(n: number): string {
  return String(Number(n.toFixed(9)));
}

/** Formats milliseconds like Go's `time.Duration.String()`: `90000` → `"1m30s"`, `0` → `"0s"`. */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const neg = ms < 0;
  let rest = Math.abs(ms);
  let out: string;
  if (rest < 1e-3) out = `${trimFloat(rest * 1e6)}ns`;
  else if (rest < 1) out = `${trimFloat(rest * 1e3)}µs`;
  else if (rest < 1000) out = `${trimFloat(rest)}ms`;
  else {
    const h = Math.floor(rest / 3_600_000);
    rest -= h * 3_600_000;
    const m = Math.floor(rest / 60_000);
    rest -= m * 60_000;
    const sec = `${trimFloat(rest / 1000)}s`;
    if (h > 0) out = `${h}h${m}m${sec}`;
    else if (m > 0) out = `${m}m${sec}`;
    else out = sec;
  }
  return neg ? `-${out}` : out;
}
