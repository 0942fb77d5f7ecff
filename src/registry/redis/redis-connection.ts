// Builds the ioredis client from `registry.redis` (single server, Sentinel or cluster; auth; TLS) and tells a credentials failure from an outage.
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisRegistryConfig } from '../../config/redis-schema.ts';
import { ConfigError } from '../../errors/config-error.ts';
import { checkTlsContext, REDIS_TLS_LABELS } from '../../tls/certificate-info.ts';

type RedisSettings = RedisRegistryConfig['redis'];

/** A single-server/Sentinel client or a cluster client. */
export type RedisClient = Redis | Cluster;

function readFile(file: string, key: string, text: boolean): string | Buffer {
  try {
    const data = readFileSync(file);
    return text ? data.toString('utf8').trimEnd() : data;
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

function hostPort(s: string): { host: string; port: number } {
  const colon = s.lastIndexOf(':');
  const host = s.slice(0, colon);
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(s.slice(colon + 1)) };
}

/** The database the url names (`/2`), default 0. */
export function redisDb(redis: RedisSettings): number {
  const db = Number(new URL(redis.url).pathname.slice(1) || '0');
  return Number.isInteger(db) ? db : 0;
}

/**
 * The options every connection shares: credentials (config wins over the url), TLS, fail-fast
 * commands while disconnected (no offline queue; the last endpoints stay in use), reconnects
 * every 100 ms doubling to 2 s, and `options` passed through last.
 */
function baseOptions(redis: RedisSettings): RedisOptions {
  const url = new URL(redis.url);
  const password =
    redis.password ??
    (redis.passwordFile !== undefined
      ? (readFile(redis.passwordFile, 'registry.redis.passwordFile', true) as string)
      : url.password !== ''
        ? decodeURIComponent(url.password)
        : undefined);
  const username = redis.username ?? (url.username !== '' ? decodeURIComponent(url.username) : undefined);
  const options: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: redis.callTimeout,
    connectTimeout: redis.callTimeout,
    retryStrategy: (times) => Math.min(2000, 100 * 2 ** Math.min(times - 1, 5)),
    db: redisDb(redis),
    ...(password !== undefined ? { password } : {}),
    ...(username !== undefined ? { username } : {}),
  };
  if (redis.tls !== undefined || url.protocol === 'rediss:') {
    const t = redis.tls ?? {};
    const ca = t.ca !== undefined ? readFile(t.ca, REDIS_TLS_LABELS.ca, false) : undefined;
    const cert = t.cert !== undefined ? readFile(t.cert, REDIS_TLS_LABELS.cert, false) : undefined;
    const key = t.key !== undefined ? readFile(t.key, REDIS_TLS_LABELS.key, false) : undefined;
    if (cert !== undefined && key !== undefined) {
      // A set OpenSSL refuses (an RSA-512 key) would fail every connection for good: stop start with
      // the line `meshlet config check` prints, naming the files, rather than reconnect forever.
      const pem = { certPem: cert.toString(), keyPem: key.toString(), caPem: ca?.toString() };
      checkTlsContext(pem, { cert: t.cert!, key: t.key!, ca: t.ca }, REDIS_TLS_LABELS);
    }
    options.tls = {
      ...(ca !== undefined ? { ca } : {}),
      ...(cert !== undefined ? { cert } : {}),
      ...(key !== undefined ? { key } : {}),
      ...(t.serverName !== undefined ? { servername: t.serverName } : {}),
    };
  }
  return options;
}

/** Creates the (not yet connected) client for a single server, a Sentinel-managed master or a cluster. */
export function createRedisClient(redis: RedisSettings): RedisClient {
  const options = { ...baseOptions(redis), ...(redis.options as RedisOptions) };
  if (redis.cluster !== undefined) {
    const { lazyConnect, enableOfflineQueue, retryStrategy, ...redisOptions } = options;
    return new Cluster(redis.cluster.nodes.map(hostPort), {
      lazyConnect,
      enableOfflineQueue,
      clusterRetryStrategy: (times) => retryStrategy?.(times) ?? 1000,
      redisOptions,
    });
  }
  if (redis.sentinel !== undefined) {
    return new Redis({
      ...options,
      name: redis.sentinel.name,
      sentinels: redis.sentinel.sentinels.map(hostPort),
      ...(redis.sentinel.password !== undefined ? { sentinelPassword: redis.sentinel.password } : {}),
    });
  }
  const url = new URL(redis.url);
  return new Redis({
    ...options,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 6379),
  });
}

/**
 * The startup error for a server that refused the credentials, naming the key; undefined for
 * anything else (an outage is retried, not fatal).
 */
export function credentialsError(err: unknown): ConfigError | undefined {
  if (err === undefined || err === null) return undefined;
  const message = (err as Error).message ?? String(err);
  if (/WRONGPASS|invalid username-password|invalid password/i.test(message)) {
    return new ConfigError('registry.redis.password', `Redis refused the credentials (${message})`);
  }
  if (/NOAUTH|Authentication required/i.test(message)) {
    return new ConfigError('registry.redis.password', `Redis requires a password (${message})`);
  }
  if (/NOPERM/i.test(message)) {
    return new ConfigError('registry.redis.username', `Redis denied the user access (${message})`);
  }
  return undefined;
}
