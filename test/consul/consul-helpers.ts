// Shared pieces of the Consul tests: a meshlet pointed at the double, polling, metrics and timing.
import { request } from 'undici';
import type { ConfigInput } from '../../src/config/schema.ts';
import { ConsulDouble, type ConsulDoubleOptions } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

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

/** A double with `users` (on `a`) and `orders` (on `c`) registered, and a synced meshlet naming `users`. */
export interface UsersOrdersMesh {
  readonly double: ConsulDouble;
  /** `users-a`'s app. */
  readonly a: TestUpstream;
  /** A spare app, registered by the tests that need it. */
  readonly b: TestUpstream;
  /** `orders-c`'s app. */
  readonly c: TestUpstream;
  readonly mesh: InProcessMeshlet;
  close(): Promise<void>;
}

/**
 * Starts the double (with `doubleOptions`), three apps and a meshlet on the Consul registry (with
 * `registryExtra`), and resolves once `/ready` answers 200 (its first sync).
 */
export async function startUsersOrdersMesh(
  doubleOptions: ConsulDoubleOptions = {},
  registryExtra: Record<string, unknown> = {},
): Promise<UsersOrdersMesh> {
  const double = new ConsulDouble(doubleOptions);
  await double.start();
  const [a, b, c] = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
  double.addInstance({ service: 'users', id: 'users-a', port: a.port });
  double.addInstance({ service: 'orders', id: 'orders-c', port: c.port });
  const mesh = await startMeshlet({
    registry: consulRegistry(double, registryExtra),
    upstreams: { users: {} },
    accessLog: { enabled: false },
    shutdown: { drainDelay: 0 },
  });
  await within(3000, async () => (await adminGet(mesh.admin, '/ready')).status === 200, 'first sync');
  return {
    double,
    a,
    b,
    c,
    mesh,
    async close() {
      await mesh.close();
      await double.stop();
      await Promise.all([a.close(), b.close(), c.close()]);
    },
  };
}
