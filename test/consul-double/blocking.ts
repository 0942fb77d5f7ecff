// Blocking queries: `?index=N&wait=D` hold the answer until the watched data's index passes N or D elapses.
import { parseGoDuration } from './duration.ts';
import { HttpError } from './register.ts';
import type { Store, Topic } from './store.ts';

/** Consul's default wait for blocking queries (5 minutes), in milliseconds. */
export const DEFAULT_WAIT_MS = 5 * 60_000;
/** Consul's maximum wait for blocking queries (10 minutes), in milliseconds. */
export const MAX_WAIT_MS = 10 * 60_000;

/** The blocking parameters of a request. */
export interface WaitParams {
  /** `?index=`; 0 when absent (no blocking). */
  minIndex: number;
  /** `?wait=` in ms, defaulted to 5 min and capped at 10 min. */
  waitMs: number;
}

/** Reads `index` and `wait` like Consul's `parseWait` (400 "Invalid wait time" / "Invalid index"). */
export function parseWait(query: URLSearchParams): WaitParams {
  let waitMs = DEFAULT_WAIT_MS;
  const wait = query.get('wait');
  if (wait !== null && wait !== '') {
    const ms = parseGoDuration(wait);
    if (ms === undefined) throw new HttpError(400, 'Invalid wait time');
    waitMs = ms;
  }
  if (waitMs > MAX_WAIT_MS || waitMs <= 0) waitMs = waitMs <= 0 ? DEFAULT_WAIT_MS : MAX_WAIT_MS;
  let minIndex = 0;
  const index = query.get('index');
  if (index !== null && index !== '') {
    if (!/^\d+$/.test(index)) throw new HttpError(400, 'Invalid index');
    minIndex = Number(index);
  }
  return { minIndex, waitMs };
}

/** One evaluation of a query: the index to report and whatever the caller will render. */
export interface QueryResult<T> {
  index: number;
  value: T;
}

/** What a blocking query needs besides its parameters. */
export interface BlockingContext {
  store: Store;
  /** Adds Consul's jitter (up to wait/16) to the wait. */
  jitter: boolean;
  /** Resolves when the request's client went away or the double is stopping. */
  cancelled: Promise<void>;
}

/**
 * Runs `run` and, when `minIndex` > 0 and the result's index ≤ `minIndex`, waits for a write touching
 * a topic `matches` accepts, re-running `run` each time, until the index exceeds `minIndex`, the
 * wait (plus jitter) elapses, the state is abandoned (index reset, restart), or the request is
 * cancelled. Like Consul, an index of 0 is reported as 1.
 */
export async function blockingQuery<T>(
  ctx: BlockingContext,
  params: WaitParams,
  matches: (topic: Topic) => boolean,
  run: () => QueryResult<T>,
): Promise<QueryResult<T>> {
  const fix = (r: QueryResult<T>): QueryResult<T> => (r.index < 1 ? { ...r, index: 1 } : r);
  const first = fix(run());
  if (params.minIndex === 0 || first.index > params.minIndex) return first;
  const jitter = ctx.jitter ? Math.random() * (params.waitMs / 16) : 0;
  return await new Promise<QueryResult<T>>((resolve) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unwatch();
      resolve(fix(run()));
    };
    const timer = setTimeout(finish, params.waitMs + jitter);
    const unwatch = ctx.store.watch(matches, (abandoned) => {
      if (done) return;
      if (abandoned) {
        finish();
        return;
      }
      if (fix(run()).index > params.minIndex) finish();
    });
    void ctx.cancelled.then(finish);
  });
}
