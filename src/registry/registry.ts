// The contract of a registry: where endpoints come from (and, for some, where this instance is registered).
import type { MeshletConfig } from '../config/schema.ts';

/** One readiness condition for `/ready`: `[name, ok, detail]`. */
export type ReadinessCheck = [string, boolean, string];

/**
 * The `app` readiness condition of a registry that registers this instance: the local app's last
 * check status (undefined before the first probe), failing only while critical or unknown.
 */
export function appReadiness(check: { status: string | undefined; output: string }): ReadinessCheck {
  const { status, output } = check;
  return [
    'app',
    status !== undefined && status !== 'critical',
    status === undefined ? output : `${status}: ${output}`,
  ];
}

/** A source of endpoints that fills the UpstreamTable. */
export interface Registry {
  /** `static`, `consul`, `dns`, `etcd` or `redis`. */
  readonly type: string;
  /** Loads the first endpoint set and starts watching. Resolves once started (not necessarily synced). */
  start(): Promise<void>;
  /** True once every watched upstream got its first snapshot. `/ready` requires it. */
  readonly synced: boolean;
  /** Stops watching (and deregisters, for registries that register). */
  stop(): Promise<void>;
  /** A JSON-able view for `/upstreams` and `/ready`. Never holds secrets. */
  status(): Record<string, unknown>;
  /** Extra `/ready` conditions, e.g. the local app's check. */
  readinessChecks?(): ReadinessCheck[];
  /** Shutdown, before the drain delay: tell peers to stop sending (mark critical / deregister). */
  beforeDrain?(): Promise<void>;
  /**
   * `POST /drain` (true) and `DELETE /drain` (false): while drained, peers are told to stop sending
   * (Consul: the check reports critical) though this instance keeps serving; undone, its real
   * health is reported again. Resolves once the registry was told (bounded).
   */
  setDraining?(draining: boolean): Promise<void>;
  /** Applies a reloaded config (same registry type). */
  reload?(config: MeshletConfig): void;
}
