// A JWKS server's keys, cached: fetched on first use, refreshed when stale or on an unknown `kid`, never more often than a floor.
import { importJWK, type JWK } from 'jose';
import { type Clock, systemClock } from '../clock.ts';

/** A key jose verifies with. */
export type VerifyKey = Awaited<ReturnType<typeof importJWK>>;

/** Outcome label of one JWKS fetch (metrics). */
export type JwksFetchResult = 'ok' | 'failed';

/** Options of {@link JwksKeys}. */
export interface JwksKeysOptions {
  /** The JWKS URL. */
  readonly url: string;
  /** Keys older than this are re-fetched on the next lookup, ms. */
  readonly ttlMs: number;
  /** Least time between two fetches, ms: an unknown `kid` inside it is answered without a fetch. */
  readonly minRefreshMs: number;
  /** Longest wait for the server, ms. */
  readonly timeoutMs: number;
  /** Time source. Defaults to {@link systemClock}. */
  readonly clock?: Clock;
  /** Called after every fetch (metrics). */
  readonly onFetch?: (result: JwksFetchResult) => void;
  /** Fetches the JWKS document; defaults to `fetch` with the timeout. */
  readonly fetchJwks?: (url: string, timeoutMs: number) => Promise<unknown>;
}

/**
 * Largest JWKS document read, bytes. A real key set is a few KiB (a dozen RSA keys stay under
 * 20 KiB); without a cap a misbehaving or hostile JWKS server could make the gateway buffer as much
 * as it can send within `jwksTimeout`.
 */
export const MAX_JWKS_BYTES = 1024 * 1024;

async function defaultFetchJwks(url: string, timeoutMs: number): Promise<unknown> {
  const res = await fetch(url, {
    signal: AbortSignal.timeout(timeoutMs),
    headers: { accept: 'application/json' },
  });
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`JWKS server answered ${res.status}`);
  }
  return JSON.parse(await readCapped(res, MAX_JWKS_BYTES));
}

/** The body as UTF-8 text; past `max` bytes it stops reading, cancels the rest and throws. */
async function readCapped(res: Response, max: number): Promise<string> {
  const announced = Number(res.headers.get('content-length') ?? Number.NaN);
  if (announced > max) {
    await res.body?.cancel();
    throw new Error(`JWKS document of ${announced} bytes is over ${max}`);
  }
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > max) {
      await reader.cancel();
      throw new Error(`JWKS document over ${max} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Why a lookup found no key: the server could not be asked, or it has no such key. */
export const JWKS_UNAVAILABLE = Symbol('jwks unavailable');

/**
 * The keys of one JWKS URL. A lookup by `kid` (and `alg`) uses the cached set; it fetches when the
 * set was never fetched or is older than `ttlMs`, or when the `kid` is unknown — but never twice
 * within `minRefreshMs`, so a flood of tokens with made-up `kid`s costs at most one fetch per
 * interval. Concurrent lookups share one fetch in flight. A failed refresh keeps the old keys.
 */
export class JwksKeys {
  readonly #options: JwksKeysOptions;
  readonly #clock: Clock;
  readonly #fetch: (url: string, timeoutMs: number) => Promise<unknown>;
  #jwks: readonly JWK[] = [];
  /** Clock reading of the last successful fetch; -Infinity before. */
  #fetchedAt = Number.NEGATIVE_INFINITY;
  /** Clock reading of the last fetch attempt; -Infinity before. */
  #attemptAt = Number.NEGATIVE_INFINITY;
  #inflight: Promise<void> | null = null;
  /** Imported keys by `kid|alg`. */
  readonly #imported = new Map<string, Promise<VerifyKey>>();
  /** Fetches made (for tests and metrics). */
  fetches = 0;
  /** Bumped whenever a fetch brought a different key set (caches of verified tokens compare it). */
  generation = 0;

  constructor(options: JwksKeysOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#fetch = options.fetchJwks ?? defaultFetchJwks;
  }

  /**
   * The key for a token's `kid` and `alg`; undefined when the JWKS has none (after a refresh if one
   * was allowed), {@link JWKS_UNAVAILABLE} when no key set could be fetched at all.
   */
  async key(kid: string | undefined, alg: string): Promise<VerifyKey | undefined | typeof JWKS_UNAVAILABLE> {
    const now = this.#clock.now();
    if (now - this.#fetchedAt >= this.#options.ttlMs && this.#mayFetch(now)) await this.#refresh();
    let jwk = this.#find(kid, alg);
    if (jwk === undefined && this.#mayFetch(this.#clock.now())) {
      await this.#refresh();
      jwk = this.#find(kid, alg);
    }
    if (jwk === undefined) return this.#fetchedAt === Number.NEGATIVE_INFINITY ? JWKS_UNAVAILABLE : undefined;
    const id = `${jwk.kid ?? ''}|${alg}`;
    let imported = this.#imported.get(id);
    if (imported === undefined) {
      imported = importJWK(jwk, alg) as Promise<VerifyKey>;
      imported.catch(() => this.#imported.delete(id));
      this.#imported.set(id, imported);
    }
    return imported;
  }

  #mayFetch(now: number): boolean {
    return this.#inflight !== null || now - this.#attemptAt >= this.#options.minRefreshMs;
  }

  #find(kid: string | undefined, alg: string): JWK | undefined {
    let found: JWK | undefined;
    for (const k of this.#jwks) {
      if (k.use !== undefined && k.use !== 'sig') continue;
      if (k.alg !== undefined && k.alg !== alg) continue;
      if (kid !== undefined) {
        if (k.kid === kid) return k;
      } else {
        // No kid: only an unambiguous key.
        if (found !== undefined) return undefined;
        found = k;
      }
    }
    return found;
  }

  #refresh(): Promise<void> {
    if (this.#inflight !== null) return this.#inflight;
    this.#attemptAt = this.#clock.now();
    this.fetches++;
    this.#inflight = this.#fetch(this.#options.url, this.#options.timeoutMs)
      .then((doc) => {
        const keys = (doc as { keys?: unknown } | null)?.keys;
        if (!Array.isArray(keys)) throw new Error('JWKS document has no "keys" array');
        const next = keys.filter((k): k is JWK => typeof k === 'object' && k !== null);
        if (JSON.stringify(next) !== JSON.stringify(this.#jwks)) this.generation++;
        this.#jwks = next;
        this.#imported.clear();
        this.#fetchedAt = this.#clock.now();
        this.#options.onFetch?.('ok');
      })
      .catch(() => this.#options.onFetch?.('failed'))
      .finally(() => {
        this.#inflight = null;
      });
    return this.#inflight;
  }
}
