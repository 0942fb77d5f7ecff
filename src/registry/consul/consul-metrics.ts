// The Consul registry's metrics (prom-client), declared in one block on the daemon's metric registry.
import { Counter, Gauge, type Registry } from 'prom-client';

/** Consul operations counted in `meshlet_registry_consul_errors_total{operation}`. */
export type ConsulOperation = 'watch' | 'catalog' | 'register' | 'check_update' | 'deregister';

/** Metrics of the Consul registry. Labels are bounded: operation names, watch kinds, check statuses, collision outcomes. */
export class ConsulMetrics {
  readonly up: Gauge;
  readonly errors: Counter<'operation'>;
  readonly watches: Gauge<'kind'>;
  readonly snapshots: Counter;
  readonly registrations: Counter;
  readonly appStatus: Gauge<'status'>;
  readonly invalid: Counter<'kind'>;
  readonly idCollisions: Counter<'outcome'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.up = new Gauge({
      name: 'meshlet_registry_consul_up',
      help: '1 when the last call to the Consul agent got an answer, 0 while it is unreachable or failing.',
      registers,
    });
    this.errors = new Counter({
      name: 'meshlet_registry_consul_errors_total',
      help: 'Failed calls to the Consul agent, by operation.',
      labelNames: ['operation'] as const,
      registers,
    });
    this.watches = new Gauge({
      name: 'meshlet_registry_consul_watches',
      help: 'Blocking-query watches running, by kind: configured (named in config) or on_demand.',
      labelNames: ['kind'] as const,
      registers,
    });
    this.snapshots = new Counter({
      name: 'meshlet_registry_consul_snapshots_total',
      help: 'Endpoint snapshots applied to upstreams from Consul answers that changed something.',
      registers,
    });
    this.registrations = new Counter({
      name: 'meshlet_registry_consul_registrations_total',
      help: 'Registrations of this instance in Consul (the first one and every re-registration).',
      registers,
    });
    this.appStatus = new Gauge({
      name: 'meshlet_app_check_status',
      help: "1 for the local app's current check status (passing, warning or critical), 0 for the others.",
      labelNames: ['status'] as const,
      registers,
    });
    this.invalid = new Counter({
      name: 'meshlet_registry_consul_invalid_total',
      help: 'Consul answers refused whole (kind="answer": too large, not JSON, wrong shape; the last endpoints are kept) and health entries skipped (kind="entry": no Service, bad port).',
      labelNames: ['kind'] as const,
      registers,
    });
    this.idCollisions = new Counter({
      name: 'meshlet_registry_consul_service_id_collisions_total',
      help: 'Times another live instance was found holding the service ID this one would register under (never registered over): outcome="renamed" (registered under a distinct ID), outcome="refused" (not registered: registry.serviceId, or every fallback ID, is held).',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.up.set(0);
    for (const outcome of ['renamed', 'refused']) this.idCollisions.labels(outcome).inc(0);
    for (const kind of ['answer', 'entry']) this.invalid.labels(kind).inc(0);
    for (const kind of ['configured', 'on_demand']) this.watches.labels(kind).set(0);
  }

  /** Publishes the app's check status. */
  setAppStatus(status: 'passing' | 'warning' | 'critical'): void {
    for (const s of ['passing', 'warning', 'critical']) this.appStatus.labels(s).set(s === status ? 1 : 0);
  }
}
