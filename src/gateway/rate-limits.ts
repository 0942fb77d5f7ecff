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

/** Options of {@link KeyedLimit}. */
export interface KeyedLimitOptions {
  readonly clock?: Clock;
  /** Keys tracked at most; past it the least recently used key's bucket is dropped. Default 10,000. */
  readonly maxKeys?: number;
  /** Called each time a bucket is dropped to stay within `maxKeys` (a metric). */
  readonly onEvict?: () => void;
}

/**
 * A token bucket per caller key (`rateLimit` of a gateway route: per key, tenant or client address;
 * `tenantDefaults.rateLimit`: per tenant). At most `maxKeys` buckets are kept: a new key past the
 * bound drops the least recently used one (which starts full again if it comes back).
 */
export class KeyedLimit {
  readonly #buckets: KeyedTokenBuckets;
  readonly #perSecond: number;
  readonly #burst: number;
  readonly #policy: string;
  readonly #onEvict: (() => void) | undefined;

  constructor(spec: GatewayRateSpec, options: KeyedLimitOptions = {}) {
    this.#perSecond = spec.perSecond;
    this.#burst = burstOf(spec);
    this.#policy = policyOf(this.#perSecond, this.#burst);
    this.#onEvict = options.onEvict;
    this.#buckets = new KeyedTokenBuckets({
      ratePerSecond: spec.perSecond,
      burst: this.#burst,
      clock: options.clock ?? systemClock,
      ...(options.maxKeys === undefined ? {} : { maxKeys: options.maxKeys }),
    });
  }

  /** Buckets kept now. */
  get size(): number {
    return this.#buckets.size;
  }

  take(key: string): LimitVerdict {
    const b = this.#buckets;
    const evicted = b.evictionsTotal;
    const ok = b.tryTake(key);
    if (b.evictionsTotal !== evicted) this.#onEvict?.();
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

/** A group of 1..4 hex digits as a number, or -1. */
function hexGroup(text: string): number {
  if (text.length === 0 || text.length > 4) return -1;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i) | 0x20; // lowercase letters; digits keep their code
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (d === -1) return -1;
    n = (n << 4) | d;
  }
  return n;
}

/** The eight 16-bit groups of an IPv6 address (a trailing dotted IPv4 part and a `%zone` allowed), or null. */
function ipv6Groups(ip: string): number[] | null {
  let text = ip;
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  if (text.includes('.')) {
    const colon = text.lastIndexOf(':');
    const v4 = text.slice(colon + 1);
    if (isIP(v4) !== 4) return null;
    const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, colon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const gap = text.indexOf('::');
  if (gap !== -1 && text.indexOf('::', gap + 1) !== -1) return null;
  const head = gap === -1 ? text.split(':') : gap === 0 ? [] : text.slice(0, gap).split(':');
  const tail = gap === -1 || gap + 2 === text.length ? [] : text.slice(gap + 2).split(':');
  const zeros = 8 - head.length - tail.length;
  if (gap === -1 ? zeros !== 0 : zeros < 1) return null;
  const groups: number[] = [];
  for (const g of head) groups.push(hexGroup(g));
  for (let i = 0; i < zeros; i++) groups.push(0);
  for (const g of tail) groups.push(hexGroup(g));
  return groups.includes(-1) ? null : groups;
}

/**
 * The address a client's rate-limit bucket is keyed by (`by: ip`, and the client-address fallback
 * of `by: key` and `by: tenant`): an IPv4 address as it is; an IPv4-mapped IPv6 address
 * (`::ffff:1.2.3.4`, how a dual-stack listener shows an IPv4 peer) or a NAT64 one
 * (`64:ff9b::1.2.3.4`, RFC 6052) as its IPv4 address; any other IPv6 address as its first
 * `v6PrefixBits` bits (`2001:db8:0:1::/64` for 64, the default), since an end site is assigned a
 * whole /64 and could otherwise take a fresh bucket per address; anything else as it is.
 * @param v6PrefixBits 1..128 (`gateway.rateLimitIpv6Prefix`).
 */
export function bucketAddress(ip: string, v6PrefixBits: number): string {
  if (!ip.includes(':')) return ip;
  const g = ipv6Groups(ip);
  if (g === null) return ip;
  const v4 = `${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`;
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) return v4;
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0) return v4;
  let key = '';
  for (let i = 0, bits = v6PrefixBits; i < 8; i++, bits -= 16) {
    const keep = bits >= 16 ? 16 : bits <= 0 ? 0 : bits;
    key += `${(g[i]! & (0xffff << (16 - keep)) & 0xffff).toString(16)}${i === 7 ? '/' : ':'}`;
  }
  return `${key}${v6PrefixBits}`;
}
