// Holds a blocking read open on the Consul agent while a holder of this instance's service ID is watched, so that an agent restart between two looks is noticed.
import { ConsulAnswerError, type ConsulClient, ConsulHttpError } from './consul-client.ts';

/**
 * True when a call got no answer from the agent at all (refused, reset, timed out): it may be down
 * or restarting. An HTTP status or an unusable body is an answer.
 */
export function agentUnanswered(err: unknown): boolean {
  return !(err instanceof ConsulHttpError) && !(err instanceof ConsulAnswerError);
}

/**
 * Keeps one hash-blocking read of the holder's registration (`GET /v1/agent/service/<id>?hash=&wait=`)
 * in flight while a holder is watched. The agent holds it until the holder's definition changes or
 * the wait runs out, then it is sent again at once; a restarted agent drops it, which a look once
 * per check interval could miss (the agent may go down and come back between two looks, and comes
 * back with the crashed holder's check passing for a full TTL). A read the agent did not answer
 * calls `onUnanswered` and is sent again after `retryMs`; a holder that is gone (404) is asked for
 * again after `retryMs` too. One read at a time, none while stopped.
 */
export class AgentRestartWatch {
  readonly #client: ConsulClient;
  readonly #waitMs: number;
  readonly #retryMs: number;
  readonly #onUnanswered: () => void;
  /** Aborts the current loop (its read in flight and its sleep). */
  #abort: AbortController | null = null;
  /** The ID the current loop reads. */
  #id: string | null = null;

  /**
   * @param deps.waitMs How long the agent may hold a read, ms (Consul caps it at 10 min).
   * @param deps.retryMs Pause after a failed read or a 404, ms (one check interval).
   * @param deps.onUnanswered Called after each read the agent did not answer ({@link agentUnanswered}).
   */
  constructor(deps: { client: ConsulClient; waitMs: number; retryMs: number; onUnanswered: () => void }) {
    this.#client = deps.client;
    this.#waitMs = deps.waitMs;
    this.#retryMs = deps.retryMs;
    this.#onUnanswered = deps.onUnanswered;
  }

  /** Whether a read loop runs. */
  get running(): boolean {
    return this.#abort !== null;
  }

  /** Starts holding a read on `id` (nothing changes when it already does); it ends on {@link stop} or when `signal` aborts. */
  start(id: string, signal: AbortSignal): void {
    if (this.#id === id && this.#abort !== null) return;
    this.stop();
    if (signal.aborted) return;
    const abort = new AbortController();
    signal.addEventListener('abort', () => abort.abort(signal.reason), { once: true, signal: abort.signal });
    this.#abort = abort;
    this.#id = id;
    void this.#run(id, abort.signal);
  }

  /** Stops the loop, cancelling its read. */
  stop(): void {
    this.#abort?.abort(new Error('holder watch over'));
    this.#abort = null;
    this.#id = null;
  }

  async #run(id: string, signal: AbortSignal): Promise<void> {
    let hash: string | undefined;
    while (!signal.aborted) {
      let pause = false;
      try {
        hash = (await this.#client.agentServiceHash(id, hash, this.#waitMs, signal)) ?? undefined;
        pause = hash === undefined;
      } catch (err) {
        if (signal.aborted) return;
        if (agentUnanswered(err)) this.#onUnanswered();
        hash = undefined;
        pause = true;
      }
      if (pause) await sleep(this.#retryMs, signal);
    }
  }
}

/** Waits `ms`, or less when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
