// A tiny HTTP client for the double's own tests: one call, status, headers and body.
import type { ConsulDouble } from './consul-double.ts';

/** An answer from the double. */
export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON. */
  json: <T = unknown>() => T;
  /** `X-Consul-Index` as a number (NaN when absent). */
  index: number;
}

/** Sends one request to the double (`body` objects are JSON-encoded). */
export async function call(
  double: ConsulDouble,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const init: RequestInit = { method, headers };
  if (body !== undefined)
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  const res = await fetch(`${double.url}${path}`, init);
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    text,
    json: <T>() => JSON.parse(text) as T,
    index: Number(res.headers.get('x-consul-index')),
  };
}
