// The local app's check, shared by every registry that registers this instance: probe on an interval, apply the status thresholds, count and log changes, hand each result to the registration.
import type { Logger } from '../telemetry/logger.ts';
import {
  type AppProber,
  type CheckStatus,
  createProber,
  ProbeStatus,
  type ProbeTarget,
} from './consul/app-probe.ts';

/** Longest wait for the registry during drain and shutdown (mark critical, deregister), ms. */
export const SHUTDOWN_CALL_MS = 2000;

/** The check's output while the admin API has drained this instance. */
export const DRAINED_OUTPUT =
  'meshlet is drained by the admin API (POST /drain): still serving, taking no new work';

/** `promise`, or undefined once `ms` have passed. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Probe settings from `registry.check`. */
export interface CheckSettings {
  probe: ProbeTarget;
  /** Time from one probe's start to the next, ms. */
  intervalMs: number;
  successThreshold: number;
  failureThreshold: number;
}

/**
 * Probes the local app every `intervalMs` (measured start to start), keeps the reported status
 * through the success and failure thresholds, sets the app-status metric, logs each change, and
 * then awaits `onResult` with the status and output, before the next probe is scheduled.
 */
export class AppCheckLoop {
  readonly #settings: CheckSettings;
  readonly #status: ProbeStatus;
  readonly #prober: AppProber;
  readonly #deps: { metrics: { setAppStatus(status: CheckStatus): void }; logger: Logger };
  readonly #onResult: (status: CheckStatus, output: string) => Promise<void>;
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;
  #tick: Promise<void> = Promise.resolve();

  constructor(
    settings: CheckSettings,
    deps: { metrics: { setAppStatus(status: CheckStatus): void }; logger: Logger },
    onResult: (status: CheckStatus, output: string) => Promise<void>,
  ) {
    this.#settings = settings;
    this.#status = new ProbeStatus(settings.successThreshold, settings.failureThreshold);
    this.#prober = createProber(settings.probe);
    this.#deps = deps;
    this.#onResult = onResult;
  }

  /** The status last reported (undefined before the first probe). */
  get status(): CheckStatus | undefined {
    return this.#status.status;
  }

  /** The last probe's output. */
  get output(): string {
    return this.#status.output;
  }

  /** Whether {@link stop} was called. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Resolves when the probe in progress, and its `onResult`, are done. */
  settled(): Promise<void> {
    return this.#tick;
  }

  /** Probes at once, then every interval. */
  start(): void {
    this.#schedule(0);
  }

  /** Stops probing; resolves after the probe in progress and its `onResult`. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#tick;
    this.#prober.close();
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const startedAt = performance.now();
      this.#tick = this.#probe().finally(() =>
        this.#schedule(Math.max(0, this.#settings.intervalMs - (performance.now() - startedAt))),
      );
    }, delayMs);
  }

  async #probe(): Promise<void> {
    const result = await this.#prober.probe();
    if (this.#stopped) return;
    const before = this.#status.status;
    const status = this.#status.record(result);
    this.#deps.metrics.setAppStatus(status);
    if (before !== status) {
      const level = status === 'passing' ? 'info' : 'warn';
      this.#deps.logger[level]({ msg: 'local app check', status, output: this.#status.output });
    }
    await this.#onResult(status, this.#status.output);
  }
}
