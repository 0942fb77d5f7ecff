// Registers this instance in Consul and keeps its TTL check following meshlet's probe of the local app.
import type { Logger } from '../../telemetry/logger.ts';
import type { BackendReachability } from '../backend-reachability.ts';
import { AppCheckLoop, DRAINED_OUTPUT, SHUTDOWN_CALL_MS, withTimeout } from '../app-check-loop.ts';
import { type CheckStatus, describeProbe, type ProbeTarget } from './app-probe.ts';
import { type ConsulClient, ConsulHttpError } from './consul-client.ts';
import type { ConsulMetrics, ConsulOperation } from './consul-metrics.ts';
import type { SidecarRegistration } from './sidecar-registration.ts';

/** What is registered, resolved from config. */
export interface RegistrationSpec {
  id: string;
  name: string;
  address: string;
  port: number;
  tags: readonly string[];
  meta: Readonly<Record<string, string>>;
  weights: { passing: number; warning: number };
  probe: ProbeTarget;
  /** Time between probes (and TTL refreshes), ms. */
  intervalMs: number;
  ttlMs: number;
  deregisterCriticalServiceAfterMs: number;
  successThreshold: number;
  failureThreshold: number;
}

/**
 * True when Consul no longer knows the check: the agent restarted without state or someone
 * deregistered the service. Consul ≥ 1.11 answers 404 `Unknown check ID`; older agents 500
 * `CheckID "…" does not have associated TTL`.
 */
export function registrationLost(err: unknown): boolean {
  if (!(err instanceof ConsulHttpError)) return false;
  if (err.status === 404) return true;
  return err.status === 500 && /does not have associated TTL|unknown check/i.test(err.message);
}

/**
 * The instance's registration. Every `intervalMs` it probes the local app and reports the result
 * through the TTL check (`PUT /v1/agent/check/update`, the probe's output as the note), which also
 * refreshes the TTL. When the agent answers that the check is unknown, it registers again at once,
 * so a lost registration comes back within one interval. Consul unreachable at start: it registers
 * on the first tick that reaches the agent.
 */
export class AppRegistration {
  readonly spec: RegistrationSpec;
  readonly checkId: string;
  readonly #client: ConsulClient;
  readonly #reach: BackendReachability<ConsulOperation>;
  readonly #metrics: ConsulMetrics;
  readonly #logger: Logger;
  readonly #check: AppCheckLoop;
  /** The sidecar proxy's registration, which follows this one's lifecycle (null when not registered). */
  readonly sidecar: SidecarRegistration | null;
  #registered = false;
  /** Why Consul last refused a registration or check update (4xx), or null. */
  #refusal: string | null = null;
  /** Drained by the admin API: every report says critical. */
  #drained = false;
  /**
   * A registration was sent since the last deregistration, answered or not: the agent may hold the
   * instance even when meshlet never saw the answer (a timeout, a cancelled call), so shutdown marks
   * and deregisters it anyway.
   */
  #sent = false;
  /** Aborted at shutdown: the tick's calls in flight give up, so the drain's own calls go at once. */
  readonly #shutdown = new AbortController();
  /** Consul answered 403: the token source reads `tokenFile` again (true when the token changed). */
  readonly #onForbidden: () => boolean;

  constructor(
    spec: RegistrationSpec,
    deps: {
      client: ConsulClient;
      reach: BackendReachability<ConsulOperation>;
      metrics: ConsulMetrics;
      logger: Logger;
      sidecar?: SidecarRegistration | null;
      /** Called on a 403 answer; true when it found a new ACL token (then retried at once). */
      onForbidden?: () => boolean;
    },
  ) {
    this.spec = spec;
    this.checkId = `service:${spec.id}`;
    this.#client = deps.client;
    this.#reach = deps.reach;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
    this.#check = new AppCheckLoop(spec, deps, (status, output) =>
      this.#drained ? this.#report('critical', DRAINED_OUTPUT) : this.#report(status, output),
    );
    this.sidecar = deps.sidecar ?? null;
    this.#onForbidden = deps.onForbidden ?? (() => false);
  }

  /** Whether Consul accepted the registration (and has not lost it since, as far as meshlet knows). */
  get registered(): boolean {
    return this.#registered;
  }

  /** Why Consul last refused this instance's registration or check update (a 4xx answer), or null. */
  get refusal(): string | null {
    return this.#refusal;
  }

  /**
   * A 4xx answer to a registration or check update: the agent is reachable and refuses this call
   * (ACL rights, a definition it rejects). Counted in `_errors_total{operation}` and logged as an
   * error once per distinct reason, without calling the agent unreachable (its watches may well
   * answer). Returns false for other failures (unreachable, 5xx), which go to reachability.
   */
  #refused(operation: ConsulOperation, err: unknown): boolean {
    if (!(err instanceof ConsulHttpError) || err.status < 400 || err.status >= 500) return false;
    this.#reach.ok();
    this.#metrics.errors.labels(operation).inc();
    if (this.#refusal !== err.message) {
      this.#refusal = err.message;
      this.#logger.error({
        msg: 'Consul refused this instance; retrying every check interval',
        operation,
        serviceId: this.spec.id,
        status: err.status,
        reason: err.message,
      });
    }
    return true;
  }

  /** The status last reported (undefined before the first probe) and the probe's output. */
  get check(): { status: CheckStatus | undefined; output: string } {
    return { status: this.#check.status, output: this.#check.output };
  }

  /** Starts probing and registering; returns at once. */
  start(): void {
    this.#check.start();
  }

  /**
   * `POST|DELETE /drain`: while drained every report (and the TTL refresh) is critical; undone, the
   * probe's last status goes out at once. Waits for a report in flight, so the last word is this
   * call's. Bounded to 2 s.
   */
  async setDraining(drained: boolean): Promise<void> {
    this.#drained = drained;
    await this.#check.settled();
    const status = this.#check.status;
    if (this.#check.stopped || !this.#registered || (!drained && status === undefined)) return;
    await withTimeout(
      this.#drained ? this.#report('critical', DRAINED_OUTPUT) : this.#report(status!, this.#check.output),
      SHUTDOWN_CALL_MS,
    );
  }

  async #report(status: CheckStatus, output: string, retried = false): Promise<void> {
    if (this.#shutdown.signal.aborted) return;
    if (!this.#registered) {
      await this.#register(status, output, retried);
      return;
    }
    try {
      await this.#client.updateCheck(this.checkId, status, output, this.#shutdown.signal);
      this.#reach.ok();
      this.#refusal = null;
      await this.sidecar?.refresh();
    } catch (err) {
      if (this.#shutdown.signal.aborted) return;
      if (this.#newToken(err, retried)) {
        await this.#report(status, output, true);
      } else if (registrationLost(err)) {
        this.#reach.ok();
        this.#registered = false;
        this.#sent = false;
        this.#logger.warn({ msg: 'Consul lost this instance; registering again', serviceId: this.spec.id });
        await this.#register(status, output);
      } else if (!this.#refused('check_update', err)) {
        this.#reach.failed('check_update', err as Error);
      }
    }
  }

  /** The registration body, in Consul's field names. */
  definition(status: CheckStatus): Record<string, unknown> {
    const s = this.spec;
    return {
      ID: s.id,
      Name: s.name,
      Tags: [...s.tags],
      Address: s.address,
      Port: s.port,
      Meta: { ...s.meta },
      Weights: { Passing: s.weights.passing, Warning: s.weights.warning },
      Check: {
        CheckID: this.checkId,
        Name: `meshlet: ${describeProbe(s.probe)} on the local app`,
        Notes: `meshlet probes 127.0.0.1:${s.probe.port} every ${s.intervalMs} ms and reports here`,
        TTL: `${s.ttlMs}ms`,
        Status: status,
        DeregisterCriticalServiceAfter: `${s.deregisterCriticalServiceAfterMs}ms`,
      },
    };
  }

  /** A 403 that a re-read token file answers: true when the call should be made again (once). */
  #newToken(err: unknown, retried: boolean): boolean {
    return !retried && err instanceof ConsulHttpError && err.status === 403 && this.#onForbidden();
  }

  async #register(status: CheckStatus, output: string, retried = false): Promise<void> {
    const signal = this.#shutdown.signal;
    try {
      const held = this.#sent;
      this.#sent = true;
      await this.#client.register(this.definition(status), signal).catch((err: unknown) => {
        // An answer (403, 500) means the agent did not take it; no answer may mean it did.
        if (err instanceof ConsulHttpError) this.#sent = held;
        throw err;
      });
      await this.#client.updateCheck(this.checkId, status, output, signal);
      this.#reach.ok();
    } catch (err) {
      if (signal.aborted) return;
      if (this.#newToken(err, retried)) await this.#register(status, output, true);
      else if (!this.#refused('register', err)) this.#reach.failed('register', err as Error);
      return;
    }
    this.#refusal = null;
    this.#registered = true;
    this.#metrics.registrations.inc();
    await this.sidecar?.registerWithService();
    this.#logger.info({
      msg: 'registered in Consul',
      serviceId: this.spec.id,
      service: this.spec.name,
      address: this.spec.address,
      port: this.spec.port,
      status,
    });
  }

  /** Shutdown, step 1: stop probing and mark the check critical, so peers stop sending. Bounded to 2 s. */
  async markDraining(): Promise<void> {
    this.#shutdown.abort(new Error('meshlet is shutting down'));
    await this.#check.stop();
    if (!this.#sent) return;
    if (this.sidecar !== null) await withTimeout(this.sidecar.markDraining(), SHUTDOWN_CALL_MS);
    const marked = await withTimeout(
      this.#client.updateCheck(this.checkId, 'critical', 'meshlet is shutting down: draining').then(
        () => true,
        (err: Error) => {
          if (!registrationLost(err)) this.#reach.failed('check_update', err);
          return false;
        },
      ),
      SHUTDOWN_CALL_MS,
    );
    this.#logger[marked === true ? 'info' : 'warn']({
      msg: 'marked critical in Consul for the drain',
      serviceId: this.spec.id,
      ok: marked === true,
      ...(marked === undefined ? { timeoutMs: SHUTDOWN_CALL_MS } : {}),
    });
  }

  /**
   * Shutdown, last step: deregister (also when the registration's answer never came: the agent may
   * hold it). Bounded to 2 s; the outcome is logged: deregistered, already gone (404), failed, or
   * no answer in time (the instance then stays, critical, until `DeregisterCriticalServiceAfter`).
   */
  async deregister(): Promise<void> {
    this.#shutdown.abort(new Error('meshlet is shutting down'));
    await this.#check.stop();
    if (this.sidecar !== null) await withTimeout(this.sidecar.deregister(), SHUTDOWN_CALL_MS);
    if (!this.#sent) return;
    this.#sent = false;
    this.#registered = false;
    const serviceId = this.spec.id;
    const outcome = await withTimeout(
      this.#client.deregister(serviceId).then(
        () => 'ok' as const,
        (err: Error) => err,
      ),
      SHUTDOWN_CALL_MS,
    );
    if (outcome === 'ok') {
      this.#logger.info({ msg: 'deregistered from Consul', serviceId });
    } else if (outcome === undefined) {
      this.#metrics.errors.labels('deregister').inc();
      this.#logger.warn({
        msg: 'Consul did not answer the deregistration in time; the instance stays until its TTL check turns critical and Consul reaps it',
        serviceId,
        timeoutMs: SHUTDOWN_CALL_MS,
        deregisterCriticalServiceAfterMs: this.spec.deregisterCriticalServiceAfterMs,
      });
    } else if (outcome instanceof ConsulHttpError && outcome.status === 404) {
      this.#logger.info({ msg: 'deregistration: Consul no longer held this instance', serviceId });
    } else {
      this.#reach.failed('deregister', outcome);
      this.#logger.warn({ msg: 'Consul deregistration failed', serviceId, reason: outcome.message });
    }
  }
}
