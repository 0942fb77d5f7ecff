// Reads meshlet's Prometheus exposition (the admin listener's GET /metrics) for tests: the text, its sample lines, one sample's value.
import { request } from 'undici';

/** How long one scrape may take, ms. */
const SCRAPE_TIMEOUT_MS = 5000;

/**
 * The exposition text of GET /metrics on `admin` (`http://127.0.0.1:PORT` of the admin listener).
 * Throws unless it answers 200 within 5 s.
 */
export async function scrapeMetrics(admin: string): Promise<string> {
  const res = await request(`${admin}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new Error(`GET ${admin}/metrics answered ${res.statusCode}, not 200`);
  }
  return res.body.text();
}

/** The sample lines (`name{labels} value`) of an exposition: no comments, no blank lines. */
export function sampleLines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

/** The sample lines of a fresh scrape of `admin` that match `pattern` (default: all of them). */
export async function samplesMatching(admin: string, pattern: RegExp = /./): Promise<string[]> {
  return sampleLines(await scrapeMetrics(admin)).filter((l) => pattern.test(l));
}

/** One label pair of a sample line, its value unescaped as the exposition format escapes it. */
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** The labels of a sample line's `{…}`, unescaped. */
function labelsOf(labelText: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [, name, value] of labelText.matchAll(LABEL))
    out.set(
      name!,
      value!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c)),
    );
  return out;
}

/**
 * The value of the sample of `name` whose labels are exactly `labels` (in any order; none by default)
 * in exposition `text`; 0 when there is none (a counter not yet counted has no sample).
 */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels);
  for (const line of sampleLines(text)) {
    const space = line.lastIndexOf(' ');
    const series = line.slice(0, space);
    const brace = series.indexOf('{');
    if ((brace === -1 ? series : series.slice(0, brace)) !== name) continue;
    const have = labelsOf(brace === -1 ? '' : series.slice(brace + 1, -1));
    if (have.size === want.length && want.every(([k, v]) => have.get(k) === v))
      return Number(line.slice(space + 1));
  }
  return 0;
}

/**
 * The sum of the samples of `name` whose labels include `labels` (others may be there too; `{}`: every
 * sample of `name`) in exposition `text`; 0 when there is none.
 */
export function sampleSum(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels);
  let total = 0;
  for (const line of sampleLines(text)) {
    const space = line.lastIndexOf(' ');
    const series = line.slice(0, space);
    const brace = series.indexOf('{');
    if ((brace === -1 ? series : series.slice(0, brace)) !== name) continue;
    const have = labelsOf(brace === -1 ? '' : series.slice(brace + 1, -1));
    if (want.every(([k, v]) => have.get(k) === v)) total += Number(line.slice(space + 1));
  }
  return total;
}

/** {@link sampleValue} of `name` with exactly `labels` in a fresh scrape of `admin`; 0 when absent. */
export async function metricValue(
  admin: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  return sampleValue(await scrapeMetrics(admin), name, labels);
}
