// An upstream's circuit breaker: opossum's rolling-window state machine, driven by finished requests.
import CircuitBreaker from 'opossum';

/** Breaker states as admin, metrics and the CLI name them. */
export type BreakerState = 'closed' | 'open' | 'half_open';

/** Breaker settings (config `circuitBreaker`). */
export interface BreakerOptions {
  /** Error percentage over the rolling window that opens the breaker. Default 50. */
  errorThresholdPercentage: number;
  /** Requests in the window before the breaker may open. Default 20. */
  volumeThreshold: number;
  /** Time open before one half-open trial request, ms. Default 30,000. */
  resetTimeout: number;
  /** Rolling window, ms, counted in 10 buckets. Default 10,000. */
  rollingWindow: number;
}

/** One request's outcome, settled by the request path when the request ends. */
export interface BreakerTicket {
  /** The request succeeded (any answer but a 5xx or a failure to reach the upstream). */
  success(): void;
  /** The request failed (5xx, timeout, unreachable). */
  failure(): void;
}

const FAILED = new Error('upstream request failed');

class Ticket implements BreakerTicket {
  resolve?: (v: undefined) => void;
  reject?: (e: Error) => void;
  success(): void {
    this.resolve?.(undefined);
  }
  failure(): void {
    this.reject?.(FAILED);
  }
}

/** The action opossum runs: hands the request path a ticket that settles opossum's promise. */
function track(ticket: Ticket): Promise<undefined> {
  return new Promise((resolve, reject) => {
    ticket.resolve = resolve;
    ticket.reject = reject;
  });
}

/**
 * A Hystrix-style breaker per upstream (opossum): when the error percentage over the rolling window
 * passes the threshold (after `volumeThreshold` requests), it opens and requests fail at once with
 * `circuit_open`; after `resetTimeout` one trial request goes through (half-open) and its outcome
 * closes or reopens it. `onState` is told every transition.
 */
export class UpstreamBreaker {
  readonly #breaker: CircuitBreaker<[Ticket], undefined>;
  #state: BreakerState = 'closed';

  constructor(options: BreakerOptions, onState: (state: BreakerState) => void) {
    this.#breaker = new CircuitBreaker(track, {
      timeout: false,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      resetTimeout: options.resetTimeout,
      rollingCountTimeout: options.rollingWindow,
      rollingCountBuckets: 10,
    });
    const set = (state: BreakerState) => {
      this.#state = state;
      onState(state);
    };
    this.#breaker.on('open', () => set('open'));
    this.#breaker.on('halfOpen', () => set('half_open'));
    this.#breaker.on('close', () => set('closed'));
  }

  get state(): BreakerState {
    return this.#state;
  }

  /**
   * Admits a request: a ticket to settle when it ends, or null when the breaker refuses it (open,
   * or half-open with its trial already in flight).
   */
  admit(): BreakerTicket | null {
    const b = this.#breaker;
    if (b.opened) return null;
    if (b.halfOpen && this.#trialInFlight) return null;
    const ticket = new Ticket();
    const trial = b.halfOpen;
    if (trial) this.#trialInFlight = true;
    b.fire(ticket).then(
      () => {
        if (trial) this.#trialInFlight = false;
      },
      () => {
        if (trial) this.#trialInFlight = false;
      },
    );
    return ticket;
  }

  #trialInFlight = false;

  /** Closes the breaker by hand (admin `POST /upstreams/NAME/breaker/reset`). */
  reset(): void {
    this.#trialInFlight = false;
    this.#breaker.close();
  }

  /** Stops the breaker's timers. */
  shutdown(): void {
    this.#breaker.shutdown();
  }
}
