// The `validate` authenticator: asks an identity service (`POST …/auth/validate` with the bearer token) and caches its answer per token.
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { request } from '../control-plane/control-request.ts';
import { requestThrough } from '../upstream/undici-request.ts';
import type { ValidateAuthSpec } from '../config/gateway-schema.ts';
import { type Clock, systemClock } from '../clock.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';
import {
  type Authenticator,
  type AuthOutcome,
  type Credentials,
  principalFromClaims,
  SKIP,
} from './authenticator.ts';

/** Outcome label of one identity-service call (metrics). */
export type ValidateCallResult = 'allowed' | 'denied' | 'failed';

/** Options of {@link ValidateAuthenticator}. */
export interface ValidateAuthenticatorOptions {
  /** Upstreams: a URL host that names one is reached through its balancer and pools (mTLS to its meshlet). */
  readonly table?: UpstreamTable;
  /** Time source of the cache. Defaults to {@link systemClock}. */
  readonly clock?: Clock;
  /** Called after each call to the identity service (metrics). */
  readonly onCall?: (result: ValidateCallResult) => void;
}

interface CacheEntry {
  readonly outcome: AuthOutcome;
  readonly expiresAt: number;
}

/**
 * Largest identity-service answer read, bytes. A real answer is a few hundred bytes; without a cap a
 * misbehaving identity service could make the gateway buffer (and cache, per token) as much as it
 * sends within `timeout`. A larger answer is a failed call: 503 `auth_unavailable` (or, with
 * `failOpen`, goes on unauthenticated), never cached.
 */
export const MAX_VALIDATE_BODY_BYTES = 64 * 1024;

/** An upstream's answer body as UTF-8 text; past {@link MAX_VALIDATE_BODY_BYTES} it stops reading and throws. */
async function readCapped(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    bytes += buf.length;
    if (bytes > MAX_VALIDATE_BODY_BYTES) {
      body.destroy();
      throw new Error(`answer over ${MAX_VALIDATE_BODY_BYTES} bytes`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The answer of one call: 2xx body, a denial, or a failure. */
type Answer = { status: number; body: string } | Error;

/**
 * Delegates the bearer token to an identity service: `POST url` with `Authorization: Bearer …`.
 * 200 accepts (its JSON fields become the principal and, per `headers`, identity headers upstream),
 * 401/403 (any 4xx) refuses; both are cached per token for `cacheTtl` (at most `cacheSize` tokens,
 * least recently stored dropped first), and concurrent requests with one token share one call. No
 * answer, a timeout or a 5xx is `unavailable` (503 `auth_unavailable`), never cached — or, with
 * `failOpen`, a `failOpen` outcome: the request goes on unauthenticated, and no `allow` passes it.
 */
export class ValidateAuthenticator implements Authenticator {
  readonly name: string;
  readonly challenge = 'Bearer realm="meshlet"';
  readonly identityHeaders: readonly string[];
  readonly #spec: ValidateAuthSpec;
  readonly #url: URL;
  readonly #options: ValidateAuthenticatorOptions;
  readonly #clock: Clock;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<AuthOutcome>>();
  /** Calls made to the identity service (tests and metrics). */
  calls = 0;

  constructor(name: string, spec: ValidateAuthSpec, options: ValidateAuthenticatorOptions = {}) {
    this.name = name;
    this.#spec = spec;
    this.#url = new URL(spec.url);
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.identityHeaders = Object.values(spec.headers);
  }

  authenticate(credentials: Credentials): AuthOutcome | Promise<AuthOutcome> {
    const token = credentials.bearer;
    if (token === undefined) return SKIP;
    const cached = this.#cache.get(token);
    if (cached !== undefined) {
      if (cached.expiresAt > this.#clock.now()) return cached.outcome;
      this.#cache.delete(token);
    }
    let pending = this.#inflight.get(token);
    if (pending === undefined) {
      pending = this.#ask(token).finally(() => this.#inflight.delete(token));
      this.#inflight.set(token, pending);
    }
    return pending;
  }

  async #ask(token: string): Promise<AuthOutcome> {
    this.calls++;
    const answer = await this.#call(token).catch((err: unknown) =>
      err instanceof Error ? err : new Error(String(err)),
    );
    let outcome: AuthOutcome;
    if (answer instanceof Error || answer.status >= 500) {
      this.#options.onCall?.('failed');
      const reason = `identity service ${answer instanceof Error ? `unreachable (${answer.message})` : `answered ${answer.status}`}`;
      return { kind: this.#spec.failOpen ? 'failOpen' : 'unavailable', reason };
    }
    if (answer.status >= 200 && answer.status < 300) {
      let fields: Record<string, unknown> = {};
      try {
        const parsed: unknown = answer.body === '' ? {} : JSON.parse(answer.body);
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
          fields = parsed as Record<string, unknown>;
      } catch {
        // An allowed answer without JSON: allowed, with no fields.
      }
      this.#options.onCall?.('allowed');
      outcome = {
        kind: 'ok',
        principal: principalFromClaims(this.name, fields, this.#spec.headers, this.#spec),
      };
    } else {
      this.#options.onCall?.('denied');
      outcome = { kind: 'invalid', reason: `identity service refused the token (${answer.status})` };
    }
    this.#store(token, outcome);
    return outcome;
  }

  #store(token: string, outcome: AuthOutcome): void {
    if (this.#cache.size >= this.#spec.cacheSize) {
      const oldest = this.#cache.keys().next().value as string;
      this.#cache.delete(oldest);
    }
    this.#cache.set(token, { outcome, expiresAt: this.#clock.now() + this.#spec.cacheTtl });
  }

  /** One call: through the named upstream's endpoint pool when the URL's host is an upstream, else directly. */
  async #call(token: string): Promise<Answer> {
    const url = this.#url;
    const opts = {
      method: 'POST' as const,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', 'content-length': '0' },
      headersTimeout: this.#spec.timeout,
      bodyTimeout: this.#spec.timeout,
      signal: AbortSignal.timeout(this.#spec.timeout),
    };
    const upstream = url.port === '' ? this.#options.table?.get(url.hostname) : undefined;
    let status: number;
    let body: string;
    if (upstream !== undefined) {
      const handle = upstream.pick(undefined, undefined);
      const pool = handle === undefined ? undefined : (upstream.poolOf(handle) as Dispatcher | undefined);
      if (pool === undefined) return new Error(`upstream "${upstream.name}" has no usable endpoint`);
      const res = await requestThrough(pool, {
        ...opts,
        path: `${url.pathname}${url.search}`,
        headers: { ...opts.headers, host: url.host },
      });
      status = res.statusCode;
      body = await readCapped(res.body);
    } else {
      const res = await request(url, { ...opts, maxBodyBytes: MAX_VALIDATE_BODY_BYTES });
      status = res.statusCode;
      body = await res.body.text();
    }
    return { status, body };
  }

  close(): void {
    this.#cache.clear();
  }
}
