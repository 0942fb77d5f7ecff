// The `registry: {type: dns}` branch of the config schema: resolvers, TTL bounds and how each upstream's name resolves.
import { z } from 'zod';
import { duration } from './duration-schema.ts';

const upstreamName = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$/i,
    'expected a service name of letters, digits, "-", "_", "."',
  );
const dnsName = z
  .string()
  .regex(
    /^[a-z0-9_]([a-z0-9_.-]{0,252})\.?$/i,
    'expected a DNS name such as users.default.svc.cluster.local',
  );
/** `plain` (default) or `mtls`: whether the targets are peers' meshlet inbound listeners. */
const transport = z.enum(['plain', 'mtls']).default('plain');

/** How one upstream's endpoints resolve: an SRV name, or an A/AAAA name with a port. */
const dnsUpstream = z.union([
  z.strictObject({
    /** SRV name (`_http._tcp.users.default.svc.cluster.local`): targets, ports, weights and priorities from the records. */
    srv: dnsName,
    transport,
  }),
  z.strictObject({
    /** A/AAAA name (a headless Service, an Istio-style name): every address, on `port`. */
    host: dnsName,
    port: z.number().int().min(1).max(65535, 'expected a port in 1..65535'),
    transport,
  }),
]);

/** Resolver settings. */
const dnsResolver = z
  .strictObject({
    /** Name servers, `"host"` or `"host:port"` (port 53 by default), tried in order. Default: the system's (/etc/resolv.conf). */
    servers: z
      .array(
        z
          .string()
          .regex(/^(\[[0-9a-f:.]+\]|[0-9a-f:.]+|[^\s:/[\]]+)(:\d{1,5})?$/i, 'expected "host" or "host:port"'),
      )
      .min(1)
      .optional(),
    /** Shortest time between two resolutions of a name (TTLs below it are raised). Default 1 s. */
    minTtl: duration.default(1000),
    /** Longest time an answer is used before resolving again (TTLs above it are lowered). Default 60 s. */
    maxTtl: duration.default(60_000),
    /** Time one query to one server may take. Default 2 s. */
    timeout: duration.default(2000),
  })
  .refine((d) => d.minTtl <= d.maxTtl, { message: 'must not be above maxTtl', path: ['minTtl'] })
  .prefault({});

/** `registry` with `type: dns` (discovery only: nothing is registered). */
export const dnsRegistry = z.strictObject({
  type: z.literal('dns'),
  dns: dnsResolver,
  /** Upstream name → the DNS name its endpoints resolve from. */
  upstreams: z.record(upstreamName, dnsUpstream).default({}),
});

/** The dns registry section with defaults filled in. */
export type DnsRegistryConfig = z.output<typeof dnsRegistry>;
export type DnsUpstreamConfig = DnsRegistryConfig['upstreams'][string];
