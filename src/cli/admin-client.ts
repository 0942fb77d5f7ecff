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
    throw new AdminUnreachable(
      `cannot ${method === 'GET' ? 'read' : 'reach'} ${url}: ${e.code ?? e.message}`,
    );
  }
}

/** GETs `path` from the admin API and parses JSON; any HTTP status is accepted. Timeout in ms, default 5 s. */
export function getAdmin<T>(
  admin: string,
  path: string,
  timeoutMs = 5000,
): Promise<{ status: number; body: T }> {
  return callAdmin<T>('GET', admin, path, undefined, timeoutMs);
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
  timeoutMs = 5000,
): Promise<{ status: number; body: T }> {
  return callAdmin<T>('POST', admin, path, token, timeoutMs);
}
