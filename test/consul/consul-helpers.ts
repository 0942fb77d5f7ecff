// Shared pieces of the Consul tests: a meshlet pointed at the double, polling, metrics and timing.
import { request } from 'undici';
import type { ConfigInput } from '../../src/config/schema.ts';
import type { ConsulDouble } from '../consul-double/consul-double.ts';

/** A `registry: {type: consul}` section pointing at the double, with `extra` merged in. */
export function consulRegistry(
  double: ConsulDouble,
  extra: Record<string, unknown> = {},
): ConfigInput['registry'] {
  const { consul, ...rest } = extra as { consul?: Record<string, unknown> };
  return { type: 'consul', consul: { address: double.url, ...consul }, ...rest } as ConfigInput['registry'];
}

/** GETs through meshlet's outbound listener with `Host: upstream`; the upstream port that answered, or the status. */
export async function via(outbound: string, upstream: string): Promise<string> {
  const res = await request(`${outbound}/`, { headers: { host: upstream } });
  await res.body.dump();
  return res.statusCode === 200 ? String(res.headers['x-upstream-port']) : `status ${res.statusCode}`;
}

/** Polls `probe` until it returns true; resolves with the time it took (ms) or rejects after `timeoutMs`. */
export async function within(
  timeoutMs: number,
  probe: () => Promise<boolean> | boolean,
  what: string,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The value of one Prometheus sample line from `/metrics` (0 when absent). */
export async function metric(admin: string, line: string): Promise<number> {
  const text = await (await request(`${admin}/metrics`)).body.text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? 0 : Number(found.split(' ').at(-1));
}

/** GETs an admin path: status and parsed JSON. */
export async function adminGet<T = Record<string, unknown>>(
  admin: string,
  path: string,
): Promise<{ status: number; body: T }> {
  const res = await request(`${admin}${path}`);
  return { status: res.statusCode, body: (await res.body.json()) as T };
}
