// The config file's schema (zod): every key, its type and its default; unknown keys are errors.
import { z } from 'zod';
import { parseDuration } from './duration.ts';

/** A duration: `"250ms"`, `"1s"`, `"5m"`, `"1m30s"` or a number of milliseconds; parsed to ms. */
export const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a duration like "250ms", "1s" or "5m", got ${JSON.stringify(value)}`,
    });
    return z.NEVER;
  }
  return ms;
});

const port = z.number().int().min(1, 'expected a port in 1..65535').max(65535, 'expected a port in 1..65535');
const portOrZero = z.number().int().min(0).max(65535, 'expected a port in 0..65535');
const name = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$/i,
    'expected a service name of letters, digits, "-", "_", "."',
  );

/** An endpoint: `"host:port"` or an object. */
export const endpointSpec = z.union([
  z.string().regex(/^(\[[0-9a-f:.]+\]|[^\s:/[\]]+):\d{1,5}$/i, 'expected "host:port"'),
  z.strictObject({
    address: z.string().min(1),
    port,
    weight: z.number().int().min(1).max(10_000).default(1),
    tags: z.array(z.string()).default([]),
    meta: z.record(z.string(), z.string()).default({}),
  }),
]);
export type EndpointSpec = z.input<typeof endpointSpec>;

/** `upstream name → endpoints`, as in `registry.endpoints` or the file `registry.file` names. */
export const endpointMap = z.record(name, z.array(endpointSpec));

const listener = (defaultAddress: string, defaultPort: number) =>
  z
    .strictObject({
      address: z.string().min(1).default(defaultAddress),
      port: portOrZero.default(defaultPort),
    })
    .prefault({});

const timeouts = z
  .strictObject({
    /** Time to establish a connection to an endpoint. Default 1 s (linkerd2-proxy's). */
    connect: duration.default(1000),
    /** Time from the request's start until response headers arrive, covering every attempt. Default 15 s (Envoy's route timeout). */
    request: duration.default(15_000),
    /** Longest gap between two body chunks of a response before it is cut. Default 5 m (Envoy's stream idle timeout). */
    idle: duration.default(300_000),
  })
  .prefault({});

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
  /** A dedicated listener on 127.0.0.1:port whose every request goes to this upstream. */
  port: port.optional(),
  loadBalancer: loadBalancer.default('round_robin'),
  timeouts,
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
});

const staticRegistry = z.strictObject({
  type: z.literal('static'),
  endpoints: endpointMap.default({}),
  /** A YAML file holding the same map as `endpoints`, watched for changes. */
  file: z.string().min(1).optional(),
});

/** The whole config file. */
export const configSchema = z.strictObject({
  service: z
    .strictObject({
      name,
      port,
      address: z.string().min(1).optional(),
      tags: z.array(z.string()).default([]),
      meta: z.record(z.string(), z.string()).default({}),
    })
    .optional(),
  listeners: z
    .strictObject({
      outbound: listener('127.0.0.1', 15001),
      admin: listener('127.0.0.1', 15000),
    })
    .prefault({}),
  registry: z.discriminatedUnion('type', [staticRegistry]).prefault({ type: 'static' }),
  upstreams: z.record(name, upstreamSpec.prefault({})).default({}),
  routes: z.array(routeSpec).default([]),
  accessLog: z
    .strictObject({
      /** One JSON line per request on stdout. Default on. */
      enabled: z.boolean().default(true),
      /** Share of requests logged, 0..1. Default 1 (all). Errors from meshlet itself are always logged. */
      sampleRate: z.number().min(0).max(1).default(1),
    })
    .prefault({}),
  shutdown: z
    .strictObject({
      /** Wait after SIGTERM before the listeners stop accepting, so peers notice. Default 0 s. */
      drainDelay: duration.default(0),
      /** Longest wait for in-flight requests after the listeners closed. Default 25 s. */
      drainTimeout: duration.default(25_000),
    })
    .prefault({}),
});

/** The config file as written. */
export type ConfigInput = z.input<typeof configSchema>;
/** The config with every default filled in and durations in milliseconds. */
export type MeshletConfig = z.output<typeof configSchema>;
export type UpstreamSpec = z.output<typeof upstreamSpec>;
export type RouteSpec = z.output<typeof routeSpec>;
