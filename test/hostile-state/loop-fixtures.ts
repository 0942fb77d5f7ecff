// Fixtures of the forwarding-loop tests: a host name for this host the discovery-time check does not know, a service on another loopback address, the connections a listener accepts, what must stay uncounted.
import { channel } from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import dns from 'node:dns';
import { lookup } from 'node:dns/promises';
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { expect } from 'vitest';
import { FORWARDING_LOOP_WARNING, isOwnHostAddress } from '../../src/upstream/forwarding-loop.ts';
import type { InProcessMeshlet } from '../helpers/meshlet.ts';
import { sampleSum, scrapeMetrics } from '../helpers/metrics.ts';
import { upstreamState } from '../helpers/upstream-state.ts';

/**
 * A host name that really resolves to 127.0.0.1 here and that the discovery-time check does not
 * recognize (not `localhost`, not the host name): a loopback alias from /etc/hosts, or a usual one.
 */
export async function loopbackAlias(): Promise<string> {
  const names = new Set<string>();
  try {
    for (const line of readFileSync('/etc/hosts', 'utf8').split('\n')) {
      const [address, ...aliases] = line.replace(/#.*/, '').trim().split(/\s+/);
      if (address?.startsWith('127.')) for (const a of aliases) names.add(a);
    }
  } catch {
    // no /etc/hosts: the usual names only
  }
  for (const n of ['localhost.localdomain', 'localhost4', 'ip6-localhost', 'ip6-loopback']) names.add(n);
  for (const name of names) {
    if (isOwnHostAddress(name)) continue;
    const found = await lookup(name, { all: true }).catch(() => []);
    if (found.some((a) => a.address === '127.0.0.1')) return name;
  }
  throw new Error(
    'no host name here resolves to 127.0.0.1 but localhost and the host name: add one to /etc/hosts (e.g. "127.0.0.1 meshlet-self")',
  );
}

/**
 * Makes `name` resolve to `address` for every connection this process opens by host name (meshlet's
 * upstream connections included: Node's `net.connect` looks names up through `dns.lookup`), as an
 * /etc/hosts entry would, until the returned function is called. Other names resolve as before.
 */
export function resolveNameTo(name: string, address: string): () => void {
  const real = dns.lookup;
  const patched = (host: string, ...rest: unknown[]): void => {
    (real as (...args: unknown[]) => void)(host.toLowerCase() === name ? address : host, ...rest);
  };
  (dns as { lookup: unknown }).lookup = patched;
  return () => {
    (dns as { lookup: unknown }).lookup = real;
  };
}

/** A plain HTTP service bound to `address:port` answering 200 `ok` to everything, with the requests it served. */
export async function serviceOn(
  address: string,
  port: number,
): Promise<{ served: () => number; close: () => Promise<void> }> {
  let served = 0;
  const server = createServer((_req, res) => {
    served++;
    res.end('ok');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port }, () => resolve());
  });
  return {
    served: () => served,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Every connection accepted on `port` in this process (meshlet's listeners run here), from now on. */
export function acceptedOn(port: number): { sockets: Socket[]; stop(): void } {
  const sockets: Socket[] = [];
  const accepted = channel('net.server.socket');
  const onSocket = (message: unknown): void => {
    const { socket } = message as { socket: Socket };
    if (socket.localPort === port) sockets.push(socket);
  };
  accepted.subscribe(onSocket);
  return { sockets, stop: () => accepted.unsubscribe(onSocket) };
}

/** No gRPC admin port (15002 is shared by every test), a drain bounded to 1 s, no access log. */
export const QUIET = {
  accessLog: { enabled: false },
  shutdown: { drainDelay: 0, drainTimeout: '1s' },
} as const;

/** A single counted failure would trip them: an ejection after one connect failure, the breaker after one failed request. */
export const TRIPWIRES = {
  outlierDetection: { consecutiveConnectFailure: 1, consecutiveGatewayFailure: 1, maxEjectionPercent: 100 },
  circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
} as const;

/** The endpoints named by the forwarding-loop warnings logged for `upstream`. */
export function loopWarnings(mesh: InProcessMeshlet, upstream: string): unknown[] {
  return mesh.logs
    .filter((l) => l.msg === FORWARDING_LOOP_WARNING && l.upstream === upstream)
    .map((l) => l.endpoint);
}

/** Nothing counted against the upstream's endpoints, breaker or retry budget. */
export async function expectNothingCounted(mesh: InProcessMeshlet, upstream: string): Promise<void> {
  const text = await scrapeMetrics(mesh.admin);
  for (const result of ['connect_failure', 'reset', 'timeout']) {
    expect(sampleSum(text, 'meshlet_upstream_attempts_total', { upstream, result }), result).toBe(0);
  }
  expect(sampleSum(text, 'meshlet_upstream_connect_errors_total', { upstream })).toBe(0);
  expect(sampleSum(text, 'meshlet_outlier_ejections_total', { upstream })).toBe(0);
  expect(sampleSum(text, 'meshlet_retries_total', { upstream })).toBe(0);
  expect(sampleSum(text, 'meshlet_circuit_breaker_transitions_total', { upstream })).toBe(0);
  const state = await upstreamState(mesh.admin, upstream);
  expect(state.circuitBreaker).toBe('closed');
  expect(state.outlierDetection.ejectionsActive).toBe(0);
}
