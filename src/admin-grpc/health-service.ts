// grpc.health.v1.Health on the gRPC admin port: "" follows /ready, "proxy" follows /ready?ignore=app.
import type { Server, ServerWritableStream } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { PROXY_ONLY, readiness, type ReadinessSource } from '../admin/readiness.ts';
import { ADMIN_SERVICE } from './admin-proto.ts';

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

/**
 * Adds grpc.health.v1.Health to `server` (grpc-health-check's implementation: Check, Watch, List).
 * Statuses are recomputed before every Check (so Check agrees with `/ready` at that instant), on
 * `subscribe`'s notifications (drain, shutdown), and every {@link HEALTH_REFRESH_MS} ms for what
 * changes on its own (registry sync, the app's check); Watch streams each change.
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
  const refresh = () => {
    const next: [string, ServingStatus][] = [
      [HEALTH_SERVICES.overall, statusOf([])],
      [HEALTH_SERVICES.proxy, statusOf(PROXY_ONLY)],
    ];
    for (const [name, status] of next) {
      if (current.get(name) === status) continue;
      current.set(name, status);
      health.setStatus(name, status);
    }
  };
  // Open Watch calls, ended (status OK, after what was written) when the server closes.
  const watches = new Set<ServerWritableStream<unknown, unknown>>();
  health.addToServer({
    addService(definition, implementation) {
      const check = implementation.check as (...args: unknown[]) => void;
      const watch = implementation.watch as (call: ServerWritableStream<unknown, unknown>) => void;
      server.addService(definition, {
        ...implementation,
        check: (...args: unknown[]) => {
          refresh();
          check(...args);
        },
        watch: (call: ServerWritableStream<unknown, unknown>) => {
          watches.add(call);
          const forget = () => watches.delete(call);
          call.once('cancelled', forget);
          call.once('close', forget);
          watch(call);
        },
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
      for (const call of watches) call.end();
      watches.clear();
    },
  };
}
