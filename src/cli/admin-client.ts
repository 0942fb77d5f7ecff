// Reads a running meshlet's admin API for the inspecting verbs (`services`, `health`).
import { request } from 'undici';

/** One upstream as `/upstreams` shows it (the fields the CLI prints). */
export interface UpstreamView {
  loadBalancer: string;
  synced: boolean;
  healthy: number;
  total: number;
  endpoints: { id: string; state: string; weight: number; transport: string }[];
  /** `closed`, `open`, `half_open` or `disabled`. */
  circuitBreaker: string;
}

/** `/upstreams`: the registry's status and every upstream. */
export interface UpstreamsAnswer {
  registry: Record<string, unknown> & {
    type: string;
    reachable?: boolean;
    watches?: Record<string, { kind: string }>;
  };
  upstreams: Record<string, UpstreamView>;
}

/** `/ready`: overall status and each check. */
export interface ReadyAnswer {
  status: string;
  checks: Record<string, { ok: boolean; detail: string }>;
}

/** The admin API could not be read; the message names the URL and the reason. */
export class AdminUnreachable extends Error {}

/** One call to the admin API, its JSON answer parsed whatever the status (`/ready` answers 503). */
async function callAdmin<T>(
  method: 'GET' | 'POST',
  admin: string,
  path: string,
  token: string | undefined,
  timeoutMs: number,
): Promise<{ status: number; body: T }> {
  const url = `${admin.replace(/\/+$/, '')}${path}`;
  try {
    const res = await request(url, {
      method,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: res.statusCode, body: (await res.body.json()) as T };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // AbortSignal.timeout's DOMException has a numeric legacy `code` (23) that says nothing.
    const timedOut = e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT';
    const reason = timedOut
      ? `no answer within ${timeoutMs} ms`
      : typeof e.code === 'string'
        ? e.code
        : e.message;
    throw new AdminUnreachable(`cannot ${method === 'GET' ? 'read' : 'reach'} ${url}: ${reason}`);
  }
}

/** How long the CLI waits for the admin API to answer, ms (every verb; the watch's first snapshot too). */
export const ADMIN_TIMEOUT_MS = 5000;

/** GETs `path` from the admin API and parses JSON; any HTTP status is accepted. Timeout in ms, default 5 s. */
export function getAdmin<T>(
  admin: string,
  path: string,
  timeoutMs = ADMIN_TIMEOUT_MS,
): Promise<{ status: number; body: T }> {
  return callAdmin<T>('GET', admin, path, undefined, timeoutMs);
}

/**
 * GETs `path` and checks the answer is the admin API's: one of `statuses`, a JSON object with
 * every key of `keys` an object. Anything else (`--admin` names another server, or an error
 * answer) throws {@link AdminUnreachable} saying what answered, in one line.
 */
export async function readAdmin<T>(
  admin: string,
  path: string,
  keys: readonly string[],
  statuses: readonly number[] = [200],
  timeoutMs = ADMIN_TIMEOUT_MS,
): Promise<{ status: number; body: T }> {
  const url = `${admin.replace(/\/+$/, '')}${path}`;
  let answer: { status: number; body: unknown };
  try {
    answer = await getAdmin<unknown>(admin, path, timeoutMs);
  } catch (err) {
    if (err instanceof AdminUnreachable && / is not valid JSON|Unexpected end of JSON/.test(err.message)) {
      throw new AdminUnreachable(`${url} did not answer JSON: is ${admin} a meshlet admin API?`);
    }
    throw err;
  }
  const { status, body } = answer;
  const record = body !== null && typeof body === 'object' ? (body as Record<string, unknown>) : undefined;
  const shaped =
    record !== undefined && keys.every((k) => record[k] !== null && typeof record[k] === 'object');
  if (statuses.includes(status) && shaped) return { status, body: body as T };
  const said =
    typeof record?.error === 'string'
      ? ` (${record.error}${typeof record.message === 'string' ? `: ${record.message}` : ''})`
      : '';
  throw new AdminUnreachable(
    `${url} answered ${status}${said}, not what a meshlet admin API answers: is ${admin} one?`,
  );
}

/**
 * Checks an `--admin` value: an `http://` or `https://` URL. Returns the reason it is not, or
 * undefined when it is.
 */
export function badAdminUrl(admin: string): string | undefined {
  let url: URL;
  try {
    url = new URL(admin);
  } catch {
    return `--admin: expected a URL like "http://127.0.0.1:15000", got "${admin}"`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return `--admin: expected an http:// or https:// URL, got "${admin}"`;
  return undefined;
}

/** Pads columns of a table to equal width. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '))
    .join('\n');
}

/** POSTs to `path` on the admin API (with `Authorization: Bearer TOKEN` when given) and parses JSON. */
export function postAdmin<T>(
  admin: string,
  path: string,
  token: string | undefined,
  timeoutMs = ADMIN_TIMEOUT_MS,
): Promise<{ status: number; body: T }> {
  return callAdmin<T>('POST', admin, path, token, timeoutMs);
}
