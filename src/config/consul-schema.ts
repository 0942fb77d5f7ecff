// The `registry: {type: consul}` branch of the config schema: agent connection, registration, health probe, watches.
import { z } from 'zod';
import { duration } from './duration-schema.ts';

const serviceName = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$/i,
    'expected a service name of letters, digits, "-", "_", "."',
  );

/** How meshlet reaches the Consul agent. */
const consulAgent = z
  .strictObject({
    /** Agent HTTP(S) address. Default `http://127.0.0.1:8500`. */
    address: z
      .string()
      .regex(/^https?:\/\/[^/\s]+\/?$/, 'expected "http://host:port" or "https://host:port"')
      .default('http://127.0.0.1:8500'),
    /** ACL token, sent as `X-Consul-Token`. Never logged. */
    token: z.string().min(1).optional(),
    /** A file holding the ACL token (trailing whitespace trimmed); relative to the config file. */
    tokenFile: z.string().min(1).optional(),
    /** Datacenter for discovery queries (`?dc=`); default: the agent's own. */
    datacenter: z.string().min(1).optional(),
    /** TLS to the agent (`https://` addresses): CA bundle, client certificate and key (PEM files). */
    tls: z
      .strictObject({
        ca: z.string().min(1).optional(),
        cert: z.string().min(1).optional(),
        key: z.string().min(1).optional(),
      })
      .optional(),
  })
  .prefault({});

/** meshlet's own probe of the local app, reported to Consul through a TTL check. */
const appCheck = z
  .strictObject({
    /** HTTP path probed with GET on 127.0.0.1:service.port (2xx passing, 429 warning, else critical). */
    http: z.string().startsWith('/', 'expected a path starting with "/"').optional(),
    /**
     * gRPC health probe: `grpc.health.v1.Health/Check` on 127.0.0.1:service.port (plaintext) for this
     * service name; `""` asks about the whole server. SERVING is passing; NOT_SERVING, SERVICE_UNKNOWN,
     * UNKNOWN and failed calls (refused, deadline = `timeout`, NOT_FOUND) critical. Not with `http` or `tcp`.
     */
    grpc: z.string().optional(),
    /** TCP connect probe on 127.0.0.1:service.port; the default when neither `http` nor `grpc` is set. */
    tcp: z.boolean().optional(),
    /** Time between probes. Default 10 s. */
    interval: duration.default(10_000),
    /** Time one probe may take. Default 2 s. */
    timeout: duration.default(2000),
    /** TTL of the Consul check; default 3 × interval (a crashed meshlet turns critical after it). */
    ttl: duration.optional(),
    /** Consecutive successes before a critical app is reported passing again. Default 1. */
    successThreshold: z.number().int().min(1).default(1),
    /** Consecutive failures before a passing app is reported critical. Default 1 (Consul's own checks). */
    failureThreshold: z.number().int().min(1).default(1),
    /** Consul removes an instance whose check stayed critical this long. Default 1 m. */
    deregisterCriticalServiceAfter: duration.default(60_000),
  })
  .superRefine((check, ctx) => {
    if (check.grpc !== undefined && (check.http !== undefined || check.tcp === true)) {
      const other = check.http !== undefined ? 'http' : 'tcp: true';
      ctx.addIssue({ code: 'custom', path: ['grpc'], message: `set either grpc or ${other}, not both` });
    }
  })
  .prefault({});

/** Per-upstream discovery filter. */
const discoveryFilter = z.strictObject({
  /** Only instances carrying every one of these tags (`?tag=`). Default none. */
  tags: z.array(z.string().min(1)).default([]),
  /** Discover this upstream in another datacenter. Default `consul.datacenter`. */
  datacenter: z.string().min(1).optional(),
  /**
   * Discover through `/v1/health/connect/<name>`: only instances with a sidecar proxy registered
   * (Kind connect-proxy, as meshlet registers beside each instance), dialled at the sidecar's port.
   * Default false: `/v1/health/service/<name>`, every healthy instance.
   */
  connect: z.boolean().default(false),
});

const bindPort = z
  .number()
  .int()
  .min(1, 'expected a port in 1..65535')
  .max(65535, 'expected a port in 1..65535');

/** The instance's sidecar-proxy registration (`Kind: connect-proxy`) beside the service's. */
const sidecarProxy = z
  .strictObject({
    /**
     * Register `<service-id>-sidecar-proxy` (named `<service>-sidecar-proxy`) with the service, when
     * the mTLS inbound listener runs (its port is the proxy's `Port`). Default true.
     */
    enabled: z.boolean().default(true),
    /**
     * Where an upstream without `upstreams.NAME.port` gets its per-upstream listener (its
     * `LocalBindPort`): the first port of this range that binds on 127.0.0.1. Default 21300–21499 (between Consul's sidecar ports 21000–21255 and its expose ports 21500–21755).
     */
    upstreamPorts: z
      .strictObject({ from: bindPort, to: bindPort })
      .refine((r) => r.from <= r.to, { message: 'expected from <= to' })
      .default({ from: 21300, to: 21499 }),
    /** Most upstreams listed in `Proxy.Upstreams` (configured first, then on-demand by first use). Default 64. */
    maxUpstreams: z.number().int().min(0).max(1024).default(64),
    /** Quiet time before an on-demand upstream's re-registration (several new names, one call). Default 250 ms. */
    debounce: duration.default(250),
  })
  .prefault({});

/** `registry` with `type: consul`. */
export const consulRegistry = z.strictObject({
  type: z.literal('consul'),
  consul: consulAgent,
  /** Register `service` in Consul. Default: true when `service` is set. */
  register: z.boolean().optional(),
  /** Service ID; default `<service.name>-<hostname>-<service.port>` (stable across restarts). */
  serviceId: z.string().min(1).optional(),
  /** Weights peers' balancers read (Consul's `Weights`). Defaults 1 and 1, as Consul. */
  weights: z
    .strictObject({
      passing: z.number().int().min(1).default(1),
      warning: z.number().int().min(0).default(1),
    })
    .prefault({}),
  check: appCheck,
  sidecarProxy,
  /** Upstream name → tag/datacenter filter for its watch. */
  filters: z.record(serviceName, discoveryFilter).default({}),
  watch: z
    .strictObject({
      /** `wait` of each blocking query. Default 5 m (Consul's default; max 10 m). */
      wait: duration.default(300_000),
      /** An on-demand watch (an upstream not named in config) unused this long is stopped. Default 5 m. */
      idleTimeout: duration.default(300_000),
      /** Most on-demand watches at once; a request for one more new name gets `no_route`. Default 100. */
      maxOnDemand: z.number().int().min(0).default(100),
    })
    .prefault({}),
});

/** The consul registry section with defaults filled in. */
export type ConsulRegistryConfig = z.output<typeof consulRegistry>;

/** Default `shutdown.drainDelay` with the Consul registry, ms: time for peers' watches to drop this instance. */
export const CONSUL_DRAIN_DELAY_MS = 5000;
