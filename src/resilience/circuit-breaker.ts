// An upstream's circuit breaker: a pure decision over an error window, opossum's state machine and reset timer.
import CircuitBreaker from 'opossum';
import { type Clock, systemClock } from '../clock.ts';
import { ErrorWindow } from './error-window.ts';
import { timerDelay } from './timer-delay.ts';

/** Breaker states as admin, metrics and the CLI name them. */
export type BreakerState = 'closed' | 'open' | 'half_open';

/** Breaker settings (config `circuitBreaker`). */
export interface BreakerOptions {
  /** Error percentage over the rolling window that opens the breaker. Default 50. */
  errorThresholdPercentage: number;
  /** Requests in the window before the breaker may open. Default 20. */
  volumeThreshold: number;
  /**
   * Time open before one half-open trial request, ms. Default 30,000. At most 2^31 − 1 (24.8 days):
   * a longer one is held to that, not fired after 1 ms as Node would.
   */
  resetTimeout: number;
  /** Rolling window, ms, counted in 10 buckets. Default 10,000. */
  rollingWindow: number;
}

/** What `admit` answered: refused, an ordinary request, or the half-open trial request. */
export type Admission = 0 | 1 | 2;
export const REFUSED: Admission = 0;
export const ADMITTED: Admission = 1;
export const TRIAL: Admission = 2;

/** opossum needs an action; meshlet never fires through it (that would cost a promise per request). */
const never = (): Promise<void> => Promise.resolve();

/**
 * A Hystrix-style breaker per upstream. The decision is meshlet's own and synchronous: outcomes go
 * into an `ErrorWindow` (rolling, 10 buckets) and the breaker opens when the failure percentage
 * passes the threshold after `volumeThreshold` requests. The state machine is opossum's: `open()`
 * arms its reset timer, which moves it to half-open after `resetTimeout`; then exactly one trial
 * request goes through, and its outcome closes the breaker or opens it again. Requests while open
 * are refused at once (`circuit_open`). Nothing on the request path allocates.
 */
export class UpstreamBreaker {
  readonly #opossum: CircuitBreaker<[], void>;
  readonly #clock: Clock;
  #window: ErrorWindow;
  #options: BreakerOptions;
  #trialInFlight = false;

  /** @param onState told every transition. */
  constructor(options: BreakerOptions, onState: (state: BreakerState) => void, clock: Clock = systemClock) {
    this.#options = options;
    this.#clock = clock;
    this.#window = new ErrorWindow(options.rollingWindow, 10, clock);
    this.#opossum = new CircuitBreaker(never, {
      timeout: false,
      resetTimeout: timerDelay(options.resetTimeout),
      rollingCountTimeout: options.rollingWindow,
      rollingCountBuckets: 10,
    });
    this.#opossum.on('open', () => onState('open'));
    this.#opossum.on('halfOpen', () => {
      this.#trialInFlight = false;
      onState('half_open');
    });
    this.#opossum.on('close', () => onState('closed'));
  }

  get state(): BreakerState {
    const b = this.#opossum;
    return b.opened ? 'open' : b.halfOpen ? 'half_open' : 'closed';
  }

  /**
   * Whether {@link admit} would refuse a request now: open, or half-open with its trial already in
   * flight. The request path reads it to send such a request to the upstream's fallback instead.
   */
  get refusing(): boolean {
    const b = this.#opossum;
    return !b.closed && (b.opened || this.#trialInFlight);
  }

  /** Admits a request, or refuses it (open, or half-open with its trial already in flight). */
  admit(): Admission {
    const b = this.#opossum;
    if (b.closed) return ADMITTED;
    if (b.opened || this.#trialInFlight) return REFUSED;
    this.#trialInFlight = true;
    return TRIAL;
  }

  /** Records how an admitted request ended: success = any answer but a 5xx, timeout or unreachable. */
  settle(admission: Admission, success: boolean): void {
    if (admission === REFUSED) return;
    if (admission === TRIAL) {
      this.#trialInFlight = false;
      this.#window.clear();
      if (success) this.#opossum.close();
      else this.#opossum.open();
      return;
    }
    this.#window.record(success);
    if (!success && this.#opossum.closed) {
      const { volumeThreshold, errorThresholdPercentage } = this.#options;
      if (this.#window.trips(volumeThreshold, errorThresholdPercentage)) {
        this.#window.clear();
        this.#opossum.open();
      }
    }
  }

  /**
   * Applies new settings in place (a config reload); the state, and a trial in flight, are kept.
   * The error threshold and volume threshold apply from the next outcome; the reset timeout from
   * the next opening (an open breaker half-opens when it was due); a new rolling window starts
   * empty (the outcomes counted so far are dropped), an unchanged one keeps its counts.
   */
  configure(options: BreakerOptions): void {
    if (options.rollingWindow !== this.#options.rollingWindow) {
      this.#window = new ErrorWindow(options.rollingWindow, 10, this.#clock);
    }
    this.#options = options;
    // opossum reads `options.resetTimeout` each time it arms the reset timer.
    (this.#opossum as unknown as { options: { resetTimeout: number } }).options.resetTimeout = timerDelay(
      options.resetTimeout,
    );
  }

  /**
   * Gives back an admission without an outcome: the request was refused for its own fault (a bad or
   * too slow request), which says nothing about the upstream. A trial admission frees the trial slot.
   */
  release(admission: Admission): void {
    if (admission === TRIAL) this.#trialInFlight = false;
  }

  /** Closes the breaker by hand (admin `POST /upstreams/NAME/breaker/reset`). */
  reset(): void {
    this.#trialInFlight = false;
    this.#window.clear();
    this.#opossum.close();
  }

  /** Stops the breaker's timers. */
  shutdown(): void {
    this.#opossum.shutdown();
  }
}
