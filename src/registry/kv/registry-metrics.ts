// Metrics of the etcd, redis and dns registries, in the Consul registry's names with the type in place of `consul`.
import { Counter, Gauge, type Registry } from 'prom-client';

/** Operations counted in `meshlet_registry_<type>_errors_total{operation}`. */
export type BackendOperation = 'watch' | 'resync' | 'register' | 'check_update' | 'deregister' | 'resolve';

/**
 * One block per registry type: `meshlet_registry_<type>_up`, `_errors_total{operation}`,
 * `_snapshots_total`, `_registrations_total` mean what Consul's same-named series mean;
 * `_invalid_records_total` counts skipped malformed values, `_resyncs_total{reason}` full re-reads;
 * `meshlet_app_check_status{status}` is shared with Consul; with registration,
 * `_service_id_collisions_total{outcome}` counts another live instance found holding the key this
 * one would write (`renamed`: written under a distinct ID; `refused`: not written). Labels are bounded.
 */
export class RegistryMetrics {
  readonly up: Gauge;
  readonly errors: Counter<'operation'>;
  readonly snapshots: Counter;
  readonly registrations: Counter;
  readonly invalidRecords: Counter;
  readonly resyncs: Counter<'reason'>;
  /** Null when this meshlet registers nothing. */
  readonly idCollisions: Counter<'outcome'> | null;
  readonly #appStatus: Gauge<'status'> | null;

  /**
   * @param type `etcd`, `redis` or `dns`: the middle of every name.
   * @param withAppStatus With registration: declare `meshlet_app_check_status` and `_service_id_collisions_total` too.
   */
  constructor(type: string, registry: Registry, withAppStatus: boolean) {
    const registers = [registry];
    const name = `meshlet_registry_${type}`;
    this.up = new Gauge({
      name: `${name}_up`,
      help: `1 when the last call to ${type} got an answer, 0 while it is unreachable or failing.`,
      registers,
    });
    this.errors = new Counter({
      name: `${name}_errors_total`,
      help: `Failed calls to ${type}, by operation.`,
      labelNames: ['operation'] as const,
      registers,
    });
    this.snapshots = new Counter({
      name: `${name}_snapshots_total`,
      help: `Endpoint snapshots applied to upstreams from ${type} answers that changed something.`,
      registers,
    });
    this.registrations = new Counter({
      name: `${name}_registrations_total`,
      help: `Registrations of this instance in ${type} (the first one and every re-registration).`,
      registers,
    });
    this.invalidRecords = new Counter({
      name: `${name}_invalid_records_total`,
      help: `Malformed ${type} records skipped (each distinct bad value counted once).`,
      registers,
    });
    this.resyncs = new Counter({
      name: `${name}_resyncs_total`,
      help: `Full re-reads of the ${type} catalog, by reason.`,
      labelNames: ['reason'] as const,
      registers,
    });
    this.idCollisions = withAppStatus
      ? new Counter({
          name: `${name}_service_id_collisions_total`,
          help: `Times another live instance was found holding the ${type} key of the service ID this one would register under (never written over): outcome="renamed" (registered under a distinct ID), outcome="refused" (not registered: registry.serviceId, or every fallback ID, is held).`,
          labelNames: ['outcome'] as const,
          registers,
        })
      : null;
    for (const outcome of ['renamed', 'refused']) this.idCollisions?.labels(outcome).inc(0);
    this.#appStatus = withAppStatus
      ? new Gauge({
          name: 'meshlet_app_check_status',
          help: "1 for the local app's current check status (passing, warning or critical), 0 for the others.",
          labelNames: ['status'] as const,
          registers,
        })
      : null;
    this.up.set(0);
  }

  /** Publishes the app's check status. */
  setAppStatus(status: 'passing' | 'warning' | 'critical'): void {
    for (const s of ['passing', 'warning', 'critical']) this.#appStatus?.labels(s).set(s === status ? 1 : 0);
  }
}
