// Gateway rate limits: token buckets per key, tenant or client IP, and the `ratelimit-*` / `retry-after` headers they answer with.
import { isIP } from 'node:net';
import type { GatewayRateSpec } from '../config/gateway-schema.ts';
import { type Clock, systemClock } from '../clock.ts';
import { KeyedTokenBuckets, TokenBucket } from '../resilience/token-bucket.ts';

/** What a limit said about one request. */
export interface LimitVerdict {
  readonly ok: boolean;
  /** The bucket's size (`ratelimit-limit`). */
  readonly limit: number;
  /** Whole tokens left after this request (`ratelimit-remaining`). */
  readonly remaining: number;
  /** Seconds until a token is there again (refused) or the bucket is full (allowed): `ratelimit-reset`. */
  readonly resetSeconds: number;
  /** `ratelimit-policy`: `LIMIT;w=WINDOW` with the window the burst refills in, seconds. */
  readonly policy: string;
}

function policyOf(perSecond: number, burst: number): string {
  return `${burst};w=${Math.max(1, Math.ceil(burst / perSecond))}`;
}

function burstOf(spec: GatewayRateSpec): number {
  return spec.burst ?? Math.ceil(spec.perSecond);
}

/** Asks one bucket (`take` then `tokens`/`wait`) and phrases the verdict. */
function judge(
  ok: boolean,
  tokens: number,
  waitMs: number,
  perSecond: number,
  burst: number,
  policy: string,
): LimitVerdict {
  const resetSeconds = ok ? Math.ceil((burst - tokens) / perSecond) : Math.max(1, Math.ceil(waitMs / 1000));
  return { ok, limit: burst, remaining: Math.max(0, Math.floor(tokens)), resetSeconds, policy };
}

/** Takes a token from a single bucket (a tenant's, or an API key's). */
export function takeFrom(bucket: TokenBucket, perSecond: number, burst: number): LimitVerdict {
  const ok = bucket.tryTake();
  return judge(
    ok,
    bucket.tokens,
    ok ? 0 : bucket.retryAfterMs(),
    perSecond,
    burst,
    policyOf(perSecond, burst),
  );
}

/** A token bucket per caller key for one route (`rateLimit` of a gateway route). */
export class KeyedLimit {
  readonly #buckets: KeyedTokenBuckets;
  readonly #perSecond: number;
  readonly #burst: number;
  readonly #policy: string;

  constructor(spec: GatewayRateSpec, clock: Clock = systemClock) {
    this.#perSecond = spec.perSecond;
    this.#burst = burstOf(spec);
    this.#policy = policyOf(this.#perSecond, this.#burst);
    this.#buckets = new KeyedTokenBuckets({ ratePerSecond: spec.perSecond, burst: this.#burst, clock });
  }

  take(key: string): LimitVerdict {
    const ok = this.#buckets.tryTake(key);
    const b = this.#buckets;
    return judge(
      ok,
      b.tokensOf(key),
      ok ? 0 : b.retryAfterMs(key),
      this.#perSecond,
      this.#burst,
      this.#policy,
    );
  }
}

/** One bucket for a tenant (`gateway.tenants.NAME.rateLimit`). */
export class SingleLimit {
  readonly bucket: TokenBucket;
  readonly #perSecond: number;
  readonly #burst: number;

  constructor(spec: GatewayRateSpec, clock: Clock = systemClock) {
    this.#perSecond = spec.perSecond;
    this.#burst = burstOf(spec);
    this.bucket = new TokenBucket({ ratePerSecond: spec.perSecond, burst: this.#burst, clock });
  }

  take(): LimitVerdict {
    return takeFrom(this.bucket, this.#perSecond, this.#burst);
  }
}

/** The headers of a verdict (IETF draft-ietf-httpapi-ratelimit-headers names), `[name, value, …]`. */
export function rateLimitHeaders(v: LimitVerdict): string[] {
  return [
    'ratelimit-limit',
    String(v.limit),
    'ratelimit-remaining',
    String(v.remaining),
    'ratelimit-reset',
    String(v.resetSeconds),
    'ratelimit-policy',
    v.policy,
  ];
}

/**
 * An `x-forwarded-for` entry as an address: an IPv4 or IPv6 address (lowercased), also in the
 * `1.2.3.4:port` and `[v6]:port` forms some proxies write; undefined for anything else.
 */
function addressOf(hop: string): string | undefined {
  const text = hop.trim();
  if (isIP(text) !== 0) return text.toLowerCase();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(text);
  if (bracketed !== null && isIP(bracketed[1]!) === 6) return bracketed[1]!.toLowerCase();
  const withPort = /^([\d.]+):\d{1,5}$/.exec(text);
  if (withPort !== null && isIP(withPort[1]!) === 4) return withPort[1]!;
  return undefined;
}

/**
 * The client's address as the gateway sees it: with `trustedProxies` = N proxies in front (each
 * appending to `x-forwarded-for`), the N-th address from the right of `x-forwarded-for` + the
 * peer; with 0 (the default) the peer itself, whatever the client wrote. An entry there that is not
 * an IP address (a client writing the header itself, which no proxy in front does) counts as
 * absent: the peer's address is used, so a made-up value never becomes a rate-limit key.
 */
export function clientIp(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trustedProxies: number,
): string {
  const socket = peer ?? '';
  if (trustedProxies === 0 || forwardedFor === undefined) return socket;
  const list = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
  // [...xff, peer]: the peer is the last trusted proxy; the client is N hops left of it.
  const index = list.length - trustedProxies;
  const hop = list[Math.max(0, index)];
  return (hop === undefined ? undefined : addressOf(hop)) ?? socket;
}
