// The `registry: {type: redis}` branch of the config schema: connection (single, Sentinel, cluster), key prefix, TTL, notifications, on-demand discovery.
import { z } from 'zod';
import { duration } from './duration-schema.ts';
import { onDemandWatch } from './kv-watch-schema.ts';
import { clientTls, keyPrefix, registrationKeys } from './registration-schema.ts';

const hostPort = z.string().regex(/^(\[[0-9a-f:.]+\]|[^\s:/[\]]+):\d{1,5}$/i, 'expected "host:port"');

/** How meshlet reaches Redis and lays out its keys. */
const redisServer = z
  .strictObject({
    /** `redis://[user:password@]host:port[/db]` or `rediss://` (TLS). Default `redis://127.0.0.1:6379`. */
    url: z
      .string()
      .regex(/^rediss?:\/\/\S+$/, 'expected "redis://host:port" or "rediss://host:port"')
      .default('redis://127.0.0.1:6379'),
    /** ACL user (Redis 6+); wins over the url's. */
    username: z.string().min(1).optional(),
    /** Password; wins over the url's. Never logged. */
    password: z.string().min(1).optional(),
    /** A file holding the password (trailing whitespace trimmed); relative to the config file's directory. */
    passwordFile: z.string().min(1).optional(),
    /** Key prefix: an instance is the key `<prefix><service>:<id>`. Default `meshlet:services:`. */
    prefix: keyPrefix.default('meshlet:services:'),
    /** TTL of this instance's key, refreshed every ttl/3. At least 1 s. Default 10 s. */
    ttl: duration.default(10_000).refine((ms) => ms >= 1000, 'expected at least 1s'),
    /** Pub/sub channel announcing changes (the service name as message). Default `<prefix>events`. */
    channel: z.string().min(1).optional(),
    /** Full re-read of the catalog, the safety net under notifications. Default 30 s. */
    resyncInterval: duration.default(30_000).refine((ms) => ms >= 100, 'expected at least 100ms'),
    /** Time one command may take before it counts as failed. Default 5 s. */
    callTimeout: duration.default(5000),
    tls: clientTls.optional(),
    /** Redis Sentinel: the master's name and the sentinels; `url` then gives only credentials and db. */
    sentinel: z
      .strictObject({
        name: z.string().min(1),
        sentinels: z.array(hostPort).min(1),
        /** Password of the sentinels themselves (`sentinelPassword`). */
        password: z.string().min(1).optional(),
      })
      .optional(),
    /** Redis Cluster: seed nodes; `url` then gives only credentials. */
    cluster: z.strictObject({ nodes: z.array(hostPort).min(1) }).optional(),
    /** Further ioredis options, passed through as they are (e.g. `connectTimeout`, `natMap`). */
    options: z.record(z.string(), z.unknown()).default({}),
  })
  .refine((r) => r.sentinel === undefined || r.cluster === undefined, {
    message: 'set either sentinel or cluster, not both',
    path: ['cluster'],
  })
  .refine((r) => r.password === undefined || r.passwordFile === undefined, {
    message: 'set either password or passwordFile, not both',
    path: ['passwordFile'],
  })
  .prefault({});

/** `registry` with `type: redis`. */
export const redisRegistry = z.strictObject({
  type: z.literal('redis'),
  redis: redisServer,
  ...registrationKeys,
  /** On-demand discovery: `idleTimeout` (default 5 m) and `maxOnDemand` (default 100), as Consul's `registry.watch`. */
  watch: onDemandWatch,
});

/** The redis registry section with defaults filled in. */
export type RedisRegistryConfig = z.output<typeof redisRegistry>;
