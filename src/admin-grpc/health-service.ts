// grpc.health.v1.Health on the gRPC admin port: "" follows /ready, "proxy" follows /ready?ignore=app.
import type { Server, ServerWritableStream } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { PROXY_ONLY, readiness, type ReadinessSource } from '../admin/readiness.ts';
import { ADMIN_SERVICE } from './admin-proto.ts';
import { LatestOnlyWriter, MAX_WATCH_STREAMS, refuseWatch } from './watch-stream.ts';

/** How often readiness is re-read for Watch callers between the daemon's own notifications, ms. */
export const HEALTH_REFRESH_MS = 100;

/** The health service names meshlet answers. */
export const HEALTH_SERVICES = {
  /** meshlet as a whole: SERVING exactly when `GET /ready` is 200. */
  overall: '',
  /** meshlet's own readiness without the local app's check (a native sidecar's startup probe). */
  proxy: 'proxy',
} as const;

/** The health service, kept current. `refresh()` re-reads readiness (Check does, before answering). */
export interface MeshletHealth {
  refresh(): void;
  /** Stops refreshing and ends every open Watch call (status OK) after its last status. */
  close(): void;
}

/** A health Watch call's request (grpc-health-check loads the proto with defaults: "" when unset). */
type WatchCall = ServerWritableStream<{ service?: string }, { status: string }>;

/**
 * Adds grpc.health.v1.Health to `server` (grpc-health-check's Check and List; Watch is meshlet's
 * own). Statuses are recomputed before every Check (so Check agrees with `/ready` at that instant),
 * on `subscribe`'s notifications (drain, shutdown), and every {@link HEALTH_REFRESH_MS} ms for what
 * changes on its own (registry sync, the app's check); Watch streams each change, the latest one
 * only to a reader that fell behind. Watch keeps nothing per service name asked for: the library's
 * kept an entry for every name ever watched (1,000 Watch calls with 64 KiB names cancelled at once
 * held 162 MiB); the names meshlet answers are fixed, and any other one gets SERVICE_UNKNOWN once,
 * its stream left open as the protocol asks. At most {@link MAX_WATCH_STREAMS} Watch streams are open.
 */
export function addHealthService(
  server: Server,
  source: ReadinessSource,
  subscribe: (onChange: () => void) => () => void,
): MeshletHealth {
  const statusOf = (ignore: readonly string[]): ServingStatus =>
    readiness(source, ignore).ok ? 'SERVING' : 'NOT_SERVING';
  const current = new Map<string, ServingStatus>([
    [HEALTH_SERVICES.overall, statusOf([])],
    [HEALTH_SERVICES.proxy, statusOf(PROXY_ONLY)],
    [ADMIN_SERVICE, 'SERVING'],
  ]);
  const health = new HealthImplementation(Object.fromEntries(current));
  /** Open Watch calls by the service they watch (the fixed names only). */
  const watchers = new Map<string, Set<LatestOnlyWriter<{ status: string }>>>(
    [...current.keys()].map((name) => [name, new Set()]),
  );
  /** Every open Watch call, ended (status OK, after its last status) when the server closes. */
  const open = new Set<LatestOnlyWriter<{ status: string }>>();
  const refresh = () => {
    const next: [string, ServingStatus][] = [
      [HEALTH_SERVICES.overall, statusOf([])],
      [HEALTH_SERVICES.proxy, statusOf(PROXY_ONLY)],
    ];
    for (const [name, status] of next) {
      if (current.get(name) === status) continue;
      current.set(name, status);
      health.setStatus(name, status);
      for (const writer of watchers.get(name)!) writer.write({ status });
    }
  };
  const watch = (call: WatchCall): void => {
    if (open.size >= MAX_WATCH_STREAMS) return refuseWatch(call, 'health Watch');
    const service = call.request.service ?? '';
    const writer = new LatestOnlyWriter<{ status: string }>(call);
    open.add(writer);
    const status = current.get(service);
    const forget = () => {
      open.delete(writer);
      watchers.get(service)?.delete(writer);
    };
    call.once('cancelled', forget);
    call.once('close', forget);
    if (status === undefined) writer.write({ status: 'SERVICE_UNKNOWN' });
    else {
      watchers.get(service)!.add(writer);
      writer.write({ status });
    }
  };
  health.addToServer({
    addService(definition, implementation) {
      const check = implementation.check as (...args: unknown[]) => void;
      server.addService(definition, {
        ...implementation,
        check: (...args: unknown[]) => {
          refresh();
          check(...args);
        },
        watch,
      });
    },
  });
  const unsubscribe = subscribe(refresh);
  const timer = setInterval(refresh, HEALTH_REFRESH_MS);
  timer.unref();
  return {
    refresh,
    close() {
      clearInterval(timer);
      unsubscribe();
      // The last status (NOT_SERVING at shutdown) goes out before the stream's end.
      refresh();
      for (const writer of open) writer.end();
      open.clear();
      for (const set of watchers.values()) set.clear();
    },
  };
}
