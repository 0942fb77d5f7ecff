// The config file's schema (zod): every key, its type and its default; unknown keys are errors.
import { z } from 'zod';
import { CONSUL_DRAIN_DELAY_MS, consulRegistry } from './consul-schema.ts';
import { dnsRegistry } from './dns-schema.ts';
import { duration } from './duration-schema.ts';
import { gatewayListenerSpec, gatewaySpec } from './gateway-schema.ts';
import { etcdRegistry } from './etcd-schema.ts';
import { redisRegistry } from './redis-schema.ts';
import { inboundListenerSpec, tlsSpec } from './tls-schema.ts';

export { duration } from './duration-schema.ts';

const port = z.number().int().min(1, 'expected a port in 1..65535').max(65535, 'expected a port in 1..65535');
const portOrZero = z.number().int().min(0).max(65535, 'expected a port in 0..65535');
const name = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$/i,
    'expected a service name of letters, digits, "-", "_", "."',
  );

/** The gRPC admin API's port when `listeners.adminGrpc.port` is unset. */
export const ADMIN_GRPC_DEFAULT_PORT = 15002;

/**
 * The admin token: at least 8 characters, each one an HTTP header can carry as it is (visible
 * ASCII and inner spaces). A non-ASCII character, a control character or a space at either end
 * (which HTTP strips from a header value) would make a token no caller could ever present.
 */
const adminToken = z
  .string()
  .min(8, 'expected at least 8 characters')
  .regex(
    /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/,
    'expected visible ASCII characters (inner spaces allowed): a header cannot carry others, nor spaces at either end',
  );

/** What an upstream or the local app speaks: HTTP/1.1, HTTP/2, or gRPC (HTTP/2 plus gRPC's policies). */
export const protocolSpec = z.enum(['http1', 'http2', 'grpc']);
export type Protocol = z.output<typeof protocolSpec>;

/** An endpoint: `"host:port"` or an object. */
export const endpointSpec = z.union([
  z.string().regex(/^(\[[0-9a-f:.]+\]|[^\s:/[\]]+):\d{1,5}$/i, 'expected "host:port"'),
  z.strictObject({
    address: z.string().min(1),
    port,
    weight: z.number().int().min(1).max(10_000).default(1),
    tags: z.array(z.string()).default([]),
    meta: z.record(z.string(), z.string()).default({}),
    /** What this endpoint speaks; wins over its upstream's `protocol`. Default: the upstream's. */
    protocol: protocolSpec.optional(),
  }),
]);
export type EndpointSpec = z.input<typeof endpointSpec>;

/** `upstream name → endpoints`, as in `registry.endpoints` or the file `registry.file` names. */
export const endpointMap = z.record(name, z.array(endpointSpec));

/** The app-facing listener (and the socket limits per-upstream listeners share). */
const outboundListener = z
  .strictObject({
    address: z.string().min(1).default('127.0.0.1'),
    port: portOrZero.default(15001),
    /** Time a client has to send its whole header block; then 408 and the connection closes. Default 10 s. */
    headersTimeout: duration.default(10_000),
    /** Longest stall between two chunks of a request body; then 408 and the upstream attempt is cancelled. Default 30 s. */
    bodyTimeout: duration.default(30_000),
    /** Most header fields an HTTP/1.1 request may carry; more are refused with 400. Default 100 (Envoy's `max_headers_count`). */
    maxHeadersCount: z.number().int().min(1).max(1000).default(100),
    /**
     * Most connections open at once on this listener (and on each per-upstream listener; Envoy's
     * listener `max_connections`); more are closed as they are accepted. Default none (no cap).
     */
    maxConnections: z.number().int().min(1, 'expected a positive integer').optional(),
  })
  .prefault({});

const timeouts = z
  .strictObject({
    /** Time to establish a connection to an endpoint. Default 1 s (linkerd2-proxy's). */
    connect: duration.default(1000),
    /** Time from the request's start until response headers arrive, covering every attempt. Default 15 s (Envoy's route timeout). */
    request: duration.default(15_000),
    /** Time one attempt may wait for response headers; unset = the request timeout. */
    perTry: duration.optional(),
    /** Longest gap between two body chunks of a response before it is cut. Default 5 m (Envoy's stream idle timeout). */
    idle: duration.default(300_000),
    /** Longest silence (no byte either way) on an established WebSocket or CONNECT tunnel. Default 1 h. */
    upgradeIdle: duration.default(3_600_000),
  })
  .prefault({});

/**
 * The lowest status a `retryOn` code may name: a response below it is never retried (1xx are interim,
 * 2xx and 3xx are answers, and 400–407 refuse the request itself, so the same request gets the same
 * answer). 408 Request Timeout is retried when listed, as RFC 9110 §15.5.9 suggests.
 */
export const LOWEST_RETRIABLE_STATUS = 408;

/** A `retryOn` item: a condition name, or a status code (a number or digits) of 408–599 (retry-policy.ts checks the rest). */
const retryOnItem = z.union([z.string(), z.number().int()]).superRefine((item, ctx) => {
  const code = typeof item === 'number' ? item : /^\d+$/.test(item) ? Number(item) : Number.NaN;
  if (code >= 100 && code < LOWEST_RETRIABLE_STATUS) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(item)} is never retried: meshlet retries statuses from ${LOWEST_RETRIABLE_STATUS} up only (1xx are interim, 2xx and 3xx are answers, and 400–407 refuse the request itself, which sent again gets the same answer)`,
    });
  }
});

/** Retry policy of an upstream (or a route override). */
export const retriesSpec = z
  .strictObject({
    /** Attempts in all, the first included (3 = the first try plus up to 2 retries). Default 3; 1 turns retries off. */
    attempts: z.number().int().min(1).max(10).default(3),
    /**
     * Conditions that are retried. Default connect-failure, refused-stream, gateway-error; for a
     * `grpc` upstream connect-failure, refused-stream, unavailable.
     */
    retryOn: z.array(retryOnItem).optional(),
    backoff: z.strictObject({ base: duration.default(25), max: duration.default(250) }).prefault({}),
    /** Longest `Retry-After` honoured before a retry. Default 1 s. */
    retryAfterMax: duration.default(1000),
    /**
     * Longest a gRPC response's headers and first messages (up to `bufferLimitBytes`) wait for the
     * call's status before they stream to the caller, so a call whose endpoint is lost between its
     * message and its status is retried instead of failed. Default 20 ms; 0 streams at once.
     */
    grpcResponseHold: duration.default(20),
    /** Largest request body kept for replay. Default 64 KiB (Linkerd's). */
    bufferLimitBytes: z
      .number()
      .int()
      .min(0)
      .max(16 * 1024 * 1024)
      .default(64 * 1024),
    budget: z
      .strictObject({
        /** Retries allowed per request over the window. Default 0.2. */
        ratio: z.number().min(0).max(10).default(0.2),
        /** Retries per second always allowed. Default 10 (Linkerd's floor). */
        minRetriesPerSecond: z.number().min(0).max(10_000).default(10),
        window: duration.default(10_000),
      })
      .prefault({}),
  })
  .prefault({});

const circuitBreaker = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** Error percentage over the rolling window that opens the breaker. Default 50. */
    errorThresholdPercentage: z.number().min(1).max(100).default(50),
    /** Requests in the window before the breaker may open. Default 20. */
    volumeThreshold: z.number().int().min(1).default(20),
    /** Time open before a half-open trial. Default 30 s. */
    resetTimeout: duration.default(30_000),
    /** Rolling window length. Default 10 s, in 10 buckets. */
    rollingWindow: duration.default(10_000),
  })
  .prefault({});

const outlierDetection = z
  .strictObject({
    enabled: z.boolean().default(true),
    consecutive5xx: z.number().int().min(0).default(5),
    consecutiveGatewayFailure: z.number().int().min(0).default(5),
    consecutiveConnectFailure: z.number().int().min(0).default(5),
    baseEjectionTime: duration.default(30_000),
    maxEjectionTime: duration.default(300_000),
    maxEjectionPercent: z.number().min(0).max(100).default(50),
    panicThreshold: z.number().min(0).max(100).default(50),
  })
  .prefault({});

const limits = z
  .strictObject({
    maxConcurrent: z.number().int().min(1).default(1024),
    maxPending: z.number().int().min(1).default(1024),
    maxRetries: z.number().int().min(0).default(3),
  })
  .prefault({});

const hashOn = z.union([
  z.strictObject({ header: z.string().min(1) }),
  z.strictObject({ cookie: z.string().min(1) }),
]);

const loadBalancer = z.enum([
  'round_robin',
  'random',
  'least_request',
  'weighted',
  'ring_hash',
  'maglev',
  'peak_ewma',
]);

/** Per-upstream policy. */
export const upstreamSpec = z.strictObject({
  /**
   * What the upstream's endpoints speak. Default http1; an endpoint that advertises its own
   * (Consul `Meta.meshlet_protocol`) wins. `grpc` implies HTTP/2 and gRPC's retry and status rules.
   */
  protocol: protocolSpec.optional(),
  /** A dedicated listener on 127.0.0.1:port whose every request goes to this upstream. */
  port: port.optional(),
  loadBalancer: loadBalancer.default('round_robin'),
  /** Key of ring_hash / maglev: a request header or a cookie. Without it they pick at random. */
  hashOn: hashOn.optional(),
  timeouts,
  retries: retriesSpec,
  circuitBreaker,
  outlierDetection,
  limits,
  /** `Upgrade` tokens forwarded as tunnels (lowercase); others get 400 `bad_request`. Default `[websocket]`. */
  upgrades: z.array(z.string().min(1).toLowerCase()).default(['websocket']),
  /** Largest request body accepted for this upstream, bytes; larger → 413 `body_too_large`. Default unlimited (streamed). */
  maxRequestBodyBytes: z.number().int().min(0).optional(),
  /**
   * Another upstream that serves while this one has no usable endpoint (none, or every one ejected),
   * its breaker is open, or every attempt of a request failed to connect.
   */
  fallback: z.string().min(1).optional(),
});

const headerMatch = z.strictObject({
  name: z.string().min(1),
  exact: z.string().optional(),
  present: z.boolean().optional(),
});

/** A route: requests that match go to `upstream`. Routes are tried in order before the default route. */
export const routeSpec = z.strictObject({
  match: z
    .strictObject({
      pathPrefix: z.string().startsWith('/', 'expected a path starting with "/"').optional(),
      authority: z.string().min(1).optional(),
      headers: z.array(headerMatch).default([]),
    })
    .prefault({}),
  upstream: name,
  stripPrefix: z.boolean().default(false),
  /**
   * Match and forward the normalised path (dot segments removed, `%2e` decoded, `//` merged; `%2F`,
   * `%5C` and `\` refused with 400). `false` matches and forwards the raw path instead. Default true.
   */
  normalizePath: z.boolean().default(true),
  /** Overrides the upstream's timeouts for requests on this route (keys given replace the upstream's). */
  timeouts: z
    .strictObject({ request: duration.optional(), perTry: duration.optional(), idle: duration.optional() })
    .optional(),
  /** Overrides the upstream's retry policy for requests on this route. */
  retries: retriesSpec.optional(),
});

const staticRegistry = z.strictObject({
  /** `static` is the default: a `registry` block without `type` is a static one. */
  type: z.literal('static').default('static'),
  endpoints: endpointMap.default({}),
  /** A YAML file holding the same map as `endpoints`, watched for changes; relative to the config file's directory. */
  file: z.string().min(1).optional(),
});

/** The whole config file. */
export const configSchema = z
  .strictObject({
    service: z
      .strictObject({
        name,
        port,
        address: z.string().min(1).optional(),
        tags: z.array(z.string()).default([]),
        meta: z.record(z.string(), z.string()).default({}),
        /** What the local app speaks: the inbound listener talks h2c to it for http2/grpc. Default http1. */
        protocol: protocolSpec.default('http1'),
      })
      .optional(),
    listeners: z
      .strictObject({
        outbound: outboundListener,
        admin: z
          .strictObject({
            address: z.string().min(1).default('127.0.0.1'),
            port: portOrZero.default(15000),
            /** Bearer token required by mutating admin calls; without it they are allowed from loopback callers only. */
            token: adminToken.optional(),
          })
          .prefault({}),
        /** The mTLS listener for peers' meshlets; runs when `tls` and `service` are set (defaults then apply). */
        inbound: inboundListenerSpec.optional(),
        /** The gRPC admin API (protos/meshlet/admin/v1/admin.proto, grpc.health.v1, reflection). */
        adminGrpc: z
          .strictObject({
            /** Default true; false never loads grpc-js. */
            enabled: z.boolean().default(true),
            address: z.string().min(1).default('127.0.0.1'),
            /**
             * Unset: 15002, and a 15002 already in use only logs a warning (a second meshlet on the
             * host). A port named here that cannot be bound stops meshlet from starting.
             */
            port: portOrZero.optional(),
          })
          .prefault({}),
        /** The public edge listener (gateway mode): off unless present; its routes are `gateway.routes`. */
        gateway: gatewayListenerSpec.optional(),
      })
      .prefault({}),
    /** This instance's identity for mTLS (inbound and outbound). */
    tls: tlsSpec.optional(),
    registry: z
      .discriminatedUnion(
        'type',
        [staticRegistry, consulRegistry, dnsRegistry, etcdRegistry, redisRegistry],
        {
          error: (issue) =>
            issue.code === 'invalid_union' && issue.note === 'No matching discriminator'
              ? `expected "static" (the default), "consul", "dns", "etcd" or "redis", got ${JSON.stringify((issue.input as { type?: unknown }).type)}`
              : undefined,
        },
      )
      .prefault({}),
    upstreams: z.record(name, upstreamSpec.prefault({})).default({}),
    routes: z.array(routeSpec).default([]),
    /** Gateway mode: routes, authentication, tenants and limits of `listeners.gateway`. */
    gateway: gatewaySpec.optional(),
    accessLog: z
      .strictObject({
        /** One JSON line per request on stdout. Default on. */
        enabled: z.boolean().default(true),
        /** Share of requests logged, 0..1. Default 1 (all). Errors from meshlet itself are always logged. */
        sampleRate: z.number().min(0).max(1).default(1),
      })
      .prefault({}),
    metrics: z
      .strictObject({
        /**
         * Beside `meshlet_*`, export the Envoy-named series the Consul UI's Prometheus provider
         * queries (`envoy_http_downstream_rq_*`, `envoy_cluster_upstream_rq_*` with Consul's labels).
         * Only with `registry.type: consul` and `service`. Default true.
         */
        consulUi: z.boolean().default(true),
        /**
         * Export `meshlet_nodejs_gc_duration_seconds`, the GC pause histogram. Default false: it
         * observes every collection, and what Node allocates for each one doubled how often the
         * old generation filled under load (README "Memory and GC"). Needs a restart.
         */
        gcDurations: z.boolean().default(false),
      })
      .prefault({}),
    shutdown: z
      .strictObject({
        /** Wait after SIGTERM before the listeners stop accepting, so peers notice. Default 0 s; 5 s with Consul. */
        drainDelay: duration.optional(),
        /** Longest wait for in-flight requests after the listeners closed. Default 25 s. */
        drainTimeout: duration.default(25_000),
        /** `meshlet run -- CMD`: time the app has after its SIGTERM before SIGKILL. Default 20 s. */
        appGracePeriod: duration.default(20_000),
      })
      .prefault({}),
  })
  .transform((config) => ({
    ...config,
    /**
     * What applies where config says nothing: to an upstream it does not name, and to the inbound
     * listener when `tls` and `service` are set without `listeners.inbound`. Filled here so the
     * daemon needs no schema once the config is loaded (config-handover.ts).
     */
    defaults: { upstream: upstreamSpec.parse({}), inboundListener: inboundListenerSpec.parse({}) },
    shutdown: {
      ...config.shutdown,
      drainDelay:
        config.shutdown.drainDelay ?? (config.registry.type === 'consul' ? CONSUL_DRAIN_DELAY_MS : 0),
    },
  }));

/** The config file as written. */
export type ConfigInput = z.input<typeof configSchema>;
/** The config with every default filled in and durations in milliseconds. */
export type MeshletConfig = z.output<typeof configSchema>;
export type UpstreamSpec = z.output<typeof upstreamSpec>;
export type RouteSpec = z.output<typeof routeSpec>;
