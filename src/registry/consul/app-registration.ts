// Registers this instance in Consul and keeps its TTL check following meshlet's probe of the local app.
import type { Logger } from '../../telemetry/logger.ts';
import type { BackendReachability } from '../backend-reachability.ts';
import { AppCheckLoop, DRAINED_OUTPUT, SHUTDOWN_CALL_MS, withTimeout } from '../app-check-loop.ts';
import { type CheckStatus, describeProbe, type ProbeTarget } from './app-probe.ts';
import { AgentRestartWatch, agentUnanswered } from './agent-restart-watch.ts';
import { type ConsulClient, ConsulHttpError } from './consul-client.ts';
import type { ConsulMetrics, ConsulOperation } from './consul-metrics.ts';
import {
  candidateIds,
  type Claim,
  claimServiceId,
  describeInstance,
  HolderWait,
  holderOf,
  type Instance,
} from './service-id-claim.ts';
import type { SidecarRegistration } from './sidecar-registration.ts';

/** What is registered, resolved from config. */
export interface RegistrationSpec {
  /** The configured ID: `registry.serviceId`, else `name-hostname-port`. */
  id: string;
  /** True when `registry.serviceId` set `id` (it is then never replaced by a distinct ID). Default false. */
  explicitId?: boolean;
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
 *
 * Before each registration it reads what the agent holds under the ID: Consul lets a registration
 * with an existing ID replace the old one silently, so two instances sharing a default ID (same
 * service name, hostname and port on one agent) would take turns in the catalog. An ID held by
 * another live instance (another Address or Port) is never registered over: a default ID is replaced
 * by a distinct one (see {@link candidateIds}), an ID `registry.serviceId` sets is not registered
 * until it is free; either way an error is logged once and counted.
 *
 * Before its first registration a holder at another Address whose TTL check has not expired may be
 * this instance's own crashed predecessor (a pod re-created at a new address): it is watched for one
 * TTL and one check interval ({@link HolderWait}), with a warning and no error. A default ID's
 * instance registers under `<id>-<address>` meanwhile (no gap in the catalog); if the holder's check
 * expires (or the holder leaves) within the watch, it registers under the default ID and only then
 * deregisters the interim one. An explicit ID's instance is not registered until the holder expires.
 * A holder still unexpired after the watch is a live instance: the collision error, and the instance
 * keeps its distinct ID (or stays unregistered).
 *
 * A call the agent did not answer during the watch ({@link agentUnanswered}: a look, a check update,
 * a registration, or the read {@link AgentRestartWatch} holds open meanwhile, which a restart between
 * two looks drops) starts it over at the next look ({@link HolderWait.interrupted}). A Consul agent
 * restarted with its data directory registers the crashed holder's TTL check again with the status
 * its last update persisted (unless that update is older than one TTL) and a full TTL from the
 * restart; with the state expired the check comes back critical but not "TTL expired" (as a live
 * instance's failing app looks) until one TTL after the restart. Either way the holder expires
 * within one TTL of the agent's first answer after the restart, inside the watch that starts then.
 *
 * An instance that moved to a distinct ID because of a live instance keeps it while it runs, also
 * once the default ID is free again: moving back would change its ID in the catalog and the Consul UI
 * (a deregistration and a registration for its peers' watches), and with two instances that share a
 * default ID the ID would pass from one to the other at each restart. Its next start claims the
 * default ID again.
 */
export class AppRegistration {
  readonly spec: RegistrationSpec;
  /** The IDs this instance may register under, the configured one first. */
  readonly #candidates: string[];
  /** The ID registered under (the configured one unless another instance holds it). */
  #id: string;
  /** What was last said about a collision (logged and counted once per distinct situation). */
  #collision: string | null = null;
  /** Watches a live-looking holder of the ID seen before the first registration: it may be this instance's crashed predecessor. */
  readonly #holderWait: HolderWait;
  /** Holds a read open on the agent while a holder is watched, so a restart between two looks starts the watch over. */
  readonly #restartWatch: AgentRestartWatch;
  /** The default ID while registered under `<id>-<address>` and watching its holder, else null. */
  #watched: string | null = null;
  /**
   * Another ID of this run's the agent may still hold for this instance: the interim ID right after
   * moving to the default one (deregistered once the default registration holds), or the default ID
   * after a move whose outcome is unknown. Deregistered (while it is this instance's) on the next
   * tick and at shutdown.
   */
  #stale: string | null = null;
  /** What was last said about a failed deregistration of {@link #stale} (logged once). */
  #staleFailure: string | null = null;
  /** The tick after a registration reads it back once: another instance may have registered the same ID at once. */
  #confirm = false;
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
    this.#id = spec.id;
    this.#candidates = candidateIds(spec.id, spec, spec.explicitId === true);
    this.#holderWait = new HolderWait(spec.ttlMs + spec.intervalMs);
    this.#client = deps.client;
    this.#restartWatch = new AgentRestartWatch({
      client: deps.client,
      waitMs: this.#holderWait.graceMs,
      retryMs: spec.intervalMs,
      onUnanswered: () => this.#holderWait.interrupted(),
    });
    this.#reach = deps.reach;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
    this.#check = new AppCheckLoop(spec, deps, (status, output) =>
      this.#drained ? this.#report('critical', DRAINED_OUTPUT) : this.#report(status, output),
    );
    this.sidecar = deps.sidecar ?? null;
    this.#onForbidden = deps.onForbidden ?? (() => false);
  }

  /** The service ID registered under: the configured one, or a distinct one when another instance holds it. */
  get id(): string {
    return this.#id;
  }

  /** The TTL check's ID, `service:<id>`. */
  get checkId(): string {
    return `service:${this.#id}`;
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
        serviceId: this.#id,
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
      if (this.#confirm && (await this.#overwritten())) {
        await this.#register(status, output);
        return;
      }
      if (this.#watched !== null && (await this.#watch(status, output))) return;
      await this.#client.updateCheck(this.checkId, status, output, this.#shutdown.signal);
      this.#reach.ok();
      this.#refusal = null;
      await this.sidecar?.refresh();
      await this.#dropStale(this.#shutdown.signal);
    } catch (err) {
      if (this.#shutdown.signal.aborted) return;
      if (this.#newToken(err, retried)) {
        await this.#report(status, output, true);
      } else if (registrationLost(err)) {
        this.#reach.ok();
        this.#registered = false;
        this.#sent = false;
        this.#logger.warn({ msg: 'Consul lost this instance; registering again', serviceId: this.#id });
        await this.#register(status, output);
      } else if (!this.#refused('check_update', err)) {
        this.#failed('check_update', err as Error);
      }
    }
  }

  /** This run holds its ID for good: no holder is watched any more. */
  #endWatch(): void {
    this.#holderWait.end();
    this.#restartWatch.stop();
  }

  /** A call that failed other than by a refusal: reachability takes it, and a holder's watch starts over when the agent did not answer. */
  #failed(operation: ConsulOperation, err: Error): void {
    if (agentUnanswered(err)) this.#holderWait.interrupted();
    this.#reach.failed(operation, err);
  }

  /** The registration body, in Consul's field names. */
  definition(status: CheckStatus): Record<string, unknown> {
    const s = this.spec;
    return {
      ID: this.#id,
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
      const askedAt = performance.now();
      const claim = await claimServiceId(
        this.#client,
        this.#candidates.slice(Math.max(0, this.#candidates.indexOf(this.#id))),
        this.spec,
        signal,
      );
      if (signal.aborted) return;
      if (!(await this.#take(claim, askedAt))) return;
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
      else if (!this.#refused('register', err)) this.#failed('register', err as Error);
      return;
    }
    this.#refusal = null;
    this.#registered = true;
    if (this.#watched === null) this.#endWatch();
    this.#confirm = true;
    this.#metrics.registrations.inc();
    await this.sidecar?.registerWithService();
    this.#logger.info({
      msg: 'registered in Consul',
      serviceId: this.#id,
      service: this.spec.name,
      address: this.spec.address,
      port: this.spec.port,
      status,
    });
    await this.#dropStale(signal);
  }

  /**
   * A tick while registered under `<id>-<address>` and watching the default ID's holder: reads what
   * the agent holds under the default ID. Free, abandoned (its TTL check expired) or this instance's:
   * moves to it ({@link #moveToWatched}; true when that took this tick's check update). Still held by
   * the holder first seen after one TTL and one check interval, or by another: a live instance, the
   * collision is logged and counted and the watch ends (the instance keeps its distinct ID). A read
   * that fails is made again on the next tick; one the agent did not answer starts the watch over.
   */
  async #watch(status: CheckStatus, output: string): Promise<boolean> {
    const watched = this.#watched!;
    const askedAt = performance.now();
    let claim: Claim;
    try {
      claim = await claimServiceId(this.#client, [watched], this.spec, this.#shutdown.signal);
    } catch (err) {
      // Made again on the next tick; the watch starts over if the agent did not answer (a restart).
      if (agentUnanswered(err)) this.#holderWait.interrupted();
      return false;
    }
    if (claim.id !== null) return this.#moveToWatched(claim, status, output);
    if (this.#holderWait.see(claim, askedAt, performance.now()) === 'waiting') return false;
    this.#watched = null;
    this.#endWatch();
    this.#renamed(claim.passed[0]!, this.#id);
    return false;
  }

  /**
   * Moves from the interim ID to the default one once its holder expired: registers under the
   * default ID and sets its TTL check, and only then deregisters the interim ID, so the instance is
   * never missing from the catalog. True when done (or shutdown began meanwhile: it deregisters
   * both); false when the agent refused or did not answer (the interim registration stays, its check
   * is updated as usual, and the next tick tries again).
   */
  async #moveToWatched(claim: Claim, status: CheckStatus, output: string): Promise<boolean> {
    const signal = this.#shutdown.signal;
    const interim = this.#id;
    const staleBefore = this.#stale;
    let answered = false;
    this.#id = claim.id!;
    this.#stale = interim;
    try {
      await this.#client.register(this.definition(status), signal);
      answered = true;
      await this.#client.updateCheck(this.checkId, status, output, signal);
      this.#reach.ok();
    } catch (err) {
      if (signal.aborted) return true;
      // Back to the interim ID; a registration under the default ID that may have gone through is dropped later.
      this.#id = interim;
      this.#stale = err instanceof ConsulHttpError && !answered ? staleBefore : claim.id;
      if (!this.#refused('register', err)) this.#failed('register', err as Error);
      return false;
    }
    this.#watched = null;
    this.#endWatch();
    this.#collision = null;
    this.#refusal = null;
    this.#confirm = true;
    this.#metrics.registrations.inc();
    if (this.sidecar !== null) {
      await this.sidecar.follow(this.#id);
      await this.sidecar.registerWithService();
    }
    await this.#dropStale(signal);
    this.#logger.info({
      msg:
        claim.holder === 'none'
          ? 'the default service ID is free now: registered under it, then deregistered the interim ID'
          : "the registration holding the default service ID expired (its TTL check is critical: a crashed earlier run's): took the ID over, then deregistered the interim ID",
      serviceId: this.#id,
      interimId: interim,
      instance: describeInstance(this.spec),
      status,
    });
    return true;
  }

  /**
   * Deregisters {@link #stale} while the agent holds it with this instance's Address and Port (never
   * another instance's registration), then forgets it; on failure it is tried again on the next tick
   * (and at shutdown), with a warning once. `signal` cancels the read (not the deregistration).
   */
  async #dropStale(signal?: AbortSignal): Promise<void> {
    const stale = this.#stale;
    if (stale === null) return;
    if (stale === this.#id) {
      this.#stale = null;
      return;
    }
    try {
      const held = await this.#client.localService(stale, signal);
      if (holderOf(held, this.spec) === 'self') {
        await this.#client.deregister(stale);
        this.#logger.info({ msg: 'deregistered from Consul', serviceId: stale });
      }
    } catch (err) {
      if (!(err instanceof ConsulHttpError && err.status === 404)) {
        if (signal?.aborted === true) return;
        const reason = (err as Error).message;
        if (this.#staleFailure !== reason) {
          this.#staleFailure = reason;
          this.#logger.warn({
            msg: 'could not deregister an earlier ID of this instance; trying again every check interval and at shutdown',
            serviceId: stale,
            reason,
          });
        }
        return;
      }
    }
    if (this.#stale === stale) this.#stale = null;
    this.#staleFailure = null;
  }

  /**
   * Reads the registration back on the tick after registering: two instances that looked at a free ID
   * at the same moment both registered it, and the later one replaced the earlier (whose check
   * updates still succeed: the check ID is the same). True when another live instance holds the ID
   * now: this one is no longer registered (its next registration claims another ID, or none).
   */
  async #overwritten(): Promise<boolean> {
    const claim = await claimServiceId(this.#client, [this.#id], this.spec, this.#shutdown.signal);
    this.#confirm = false;
    if (claim.id !== null) return false;
    this.#registered = false;
    this.#sent = false;
    return true;
  }

  /**
   * Acts on a claim before registering: watches a live-looking holder that may be this instance's
   * crashed predecessor (see {@link HolderWait}; a default ID's instance registers under its distinct
   * ID meanwhile, with a warning), takes the chosen ID (the sidecar proxy follows it), logs and counts
   * a collision once. False while an explicit ID's holder is watched or when live instances hold
   * every candidate (nothing is registered; the next tick looks again). `askedAt`: when the claim's
   * reads were sent (`performance.now()`, ms).
   */
  async #take(claim: Claim, askedAt: number): Promise<boolean> {
    const self = describeInstance(this.spec);
    const first = claim.passed[0];
    // Registering again while watching (Consul lost the interim registration): the claim starts at the interim ID.
    const verdict =
      this.#watched === null ? this.#holderWait.see(claim, askedAt, performance.now()) : 'decided';
    if (verdict === 'first') this.#restartWatch.start(first!.id, this.#shutdown.signal);
    else if (verdict === 'decided' && this.#watched === null) this.#restartWatch.stop();
    if (verdict !== 'decided' && claim.id !== null) {
      this.#watched = first!.id;
      if (verdict === 'first') {
        this.#logger.warn({
          msg: "a registration at another address holds this service ID in Consul and its TTL check has not expired: this instance's own earlier run that crashed (a pod re-created at a new address) or another live instance. Registering under a distinct ID meanwhile; moving to this ID if its TTL expires within waitMs, else it is another instance's (a collision)",
          heldId: first!.id,
          heldBy: describeInstance(first!.holder),
          serviceId: claim.id,
          instance: self,
          waitMs: this.#holderWait.graceMs,
        });
      }
      return this.#follow(claim.id);
    }
    if (verdict !== 'decided') {
      this.#refusal = `waiting up to ${this.#holderWait.graceMs} ms for the registration of service ID ${first!.id} by ${describeInstance(first!.holder)} to expire (its TTL check has not expired)`;
      if (verdict === 'first') {
        this.#logger.warn({
          msg: "a registration at another address holds this service ID in Consul and its TTL check has not expired: this instance's own earlier run that crashed (a pod re-created at a new address) or another live instance. Not registering until its TTL expires (then taking the ID over) or waitMs pass with it still refreshed (then it is another instance's)",
          serviceId: first!.id,
          heldBy: describeInstance(first!.holder),
          instance: self,
          waitMs: this.#holderWait.graceMs,
        });
      }
      return false;
    }
    if (claim.id === null) {
      const said = `refused ${claim.passed.map((p) => `${p.id}@${describeInstance(p.holder)}`).join(',')}`;
      this.#refusal = `another instance (${describeInstance(first!.holder)}) holds service ID ${first!.id} in Consul`;
      if (this.#collision !== said) {
        this.#collision = said;
        this.#metrics.idCollisions.labels('refused').inc();
        this.#logger.error({
          msg:
            this.spec.explicitId === true
              ? 'another instance holds the service ID registry.serviceId sets in Consul; not registering over it (looking again every check interval). Give each instance its own registry.serviceId'
              : 'other instances hold this service ID and its fallbacks in Consul; not registering over them (looking again every check interval). Set registry.serviceId to give each instance its own ID',
          serviceId: first!.id,
          heldBy: describeInstance(first!.holder),
          instance: self,
          candidates: claim.passed.map((p) => p.id),
        });
      }
      return false;
    }
    if (first !== undefined) this.#renamed(first, claim.id);
    else this.#collision = null;
    if (claim.holder === 'abandoned') {
      this.#logger.warn({
        msg: "taking over another instance's registration of this service ID: its TTL check expired, nobody refreshes it",
        serviceId: claim.id,
        instance: self,
      });
    }
    return this.#follow(claim.id);
  }

  /** Registers under `id` from now on (the sidecar proxy follows it). Always true. */
  async #follow(id: string): Promise<boolean> {
    if (id !== this.#id) {
      this.#id = id;
      this.#sent = false;
      await this.sidecar?.follow(id);
    }
    return true;
  }

  /** A live instance holds `held.id`, so this one registers under `id`: logged as an error and counted, once. */
  #renamed(held: { id: string; holder: Instance }, id: string): void {
    const said = `renamed ${held.id}@${describeInstance(held.holder)} to ${id}`;
    if (this.#collision === said) return;
    this.#collision = said;
    this.#metrics.idCollisions.labels('renamed').inc();
    this.#logger.error({
      msg: 'another instance holds this service ID in Consul; registering under a distinct ID instead of replacing it. Set registry.serviceId to give each instance its own ID',
      heldId: held.id,
      heldBy: describeInstance(held.holder),
      serviceId: id,
      instance: describeInstance(this.spec),
    });
  }

  /**
   * Shutdown, step 1: stop probing and mark the check critical, so peers stop sending; an interim ID
   * still held (shutdown during a move to the default ID) is deregistered at once. Bounded to 2 s a call.
   */
  async markDraining(): Promise<void> {
    this.#shutdown.abort(new Error('meshlet is shutting down'));
    await this.#check.stop();
    if (this.#stale !== null) await withTimeout(this.#dropStale(), SHUTDOWN_CALL_MS);
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
      serviceId: this.#id,
      ok: marked === true,
      ...(marked === undefined ? { timeoutMs: SHUTDOWN_CALL_MS } : {}),
    });
  }

  /**
   * Shutdown, last step: deregister (also when the registration's answer never came: the agent may
   * hold it), and an interim ID still held. Bounded to 2 s a call; the outcome is logged:
   * deregistered, already gone (404), failed, or no answer in time (the instance then stays,
   * critical, until `DeregisterCriticalServiceAfter`).
   */
  async deregister(): Promise<void> {
    this.#shutdown.abort(new Error('meshlet is shutting down'));
    await this.#check.stop();
    if (this.sidecar !== null) await withTimeout(this.sidecar.deregister(), SHUTDOWN_CALL_MS);
    if (this.#stale !== null) await withTimeout(this.#dropStale(), SHUTDOWN_CALL_MS);
    if (!this.#sent) return;
    this.#sent = false;
    this.#registered = false;
    const serviceId = this.#id;
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
