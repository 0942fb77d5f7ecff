// The `registry: {type: etcd}` branch of the config schema: cluster connection, key prefix, lease, auth, TLS and on-demand discovery.
import { z } from 'zod';
import { duration } from './duration-schema.ts';
import { onDemandWatch } from './kv-watch-schema.ts';
import { clientTls, keyPrefix, registrationKeys } from './registration-schema.ts';

/** How meshlet reaches etcd (v3 API over gRPC). */
const etcdCluster = z
  .strictObject({
    /** Client URLs of the cluster members. Default `["http://127.0.0.1:2379"]`. */
    hosts: z
      .array(
        z.string().regex(/^https?:\/\/[^/\s]+\/?$/, 'expected "http://host:port" or "https://host:port"'),
      )
      .min(1)
      .default(['http://127.0.0.1:2379']),
    /** Key prefix of the catalog: instances live at `<prefix><service>/<id>`. Default `/meshlet/services/`. */
    prefix: keyPrefix.default('/meshlet/services/'),
    /** TTL of this instance's lease, whole seconds (rounded up), at least 2 s. Default 10 s. */
    leaseTtl: duration.default(10_000).refine((ms) => ms >= 2000, 'expected at least 2s'),
    /** Time one call may take before it counts as failed. Default 5 s. */
    callTimeout: duration.default(5000),
    /** etcd user and password (`auth enable` on the cluster). Never logged. */
    auth: z
      .strictObject({
        username: z.string().min(1),
        password: z.string().min(1).optional(),
        /** A file holding the password (trailing whitespace trimmed); relative to the config file's directory. */
        passwordFile: z.string().min(1).optional(),
      })
      .refine((a) => (a.password === undefined) !== (a.passwordFile === undefined), {
        message: 'set exactly one of password or passwordFile',
        path: ['password'],
      })
      .optional(),
    /** TLS to the members (`https://` hosts). */
    tls: clientTls.optional(),
  })
  .prefault({});

/** `registry` with `type: etcd`. */
export const etcdRegistry = z.strictObject({
  type: z.literal('etcd'),
  etcd: etcdCluster,
  ...registrationKeys,
  /** On-demand discovery: `idleTimeout` (default 5 m) and `maxOnDemand` (default 100), as Consul's `registry.watch`. */
  watch: onDemandWatch,
});

/** The etcd registry section with defaults filled in. */
export type EtcdRegistryConfig = z.output<typeof etcdRegistry>;
