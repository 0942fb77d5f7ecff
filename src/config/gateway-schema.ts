// The gateway part of the config schema: `listeners.gateway` (the public edge socket) and the `gateway` block (routes, auth, tenants).
import { z } from 'zod';
import { duration } from './duration-schema.ts';

const portOrZero = z.number().int().min(0).max(65535, 'expected a port in 0..65535');
const headerName = z
  .string()
  .regex(/^[a-z0-9!#$%&'*+.^_`|~-]+$/i, 'expected a header name')
  .toLowerCase();
const upstreamName = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$/i,
    'expected a service name of letters, digits, "-", "_", "."',
  );

/**
 * `listeners.gateway`: the public edge listener (off unless present). Its socket limits are
 * stricter than the outbound listener's: the clients are the internet, not the local app.
 */
export const gatewayListenerSpec = z.strictObject({
  /** Default `0.0.0.0`. */
  address: z.string().min(1).default('0.0.0.0'),
  /** Default 8080; 0 = any free port. */
  port: portOrZero.default(8080),
  /** TLS termination with a server certificate; both files are watched and reloaded on change; relative to the config file's directory. */
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  /** Time a client has for the TLS handshake and the whole header block; then 408. Default 5 s. */
  headersTimeout: duration.default(5000),
  /** Longest stall between two chunks of a request body; then 408. Default 10 s. */
  bodyTimeout: duration.default(10_000),
  /** Idle keep-alive connection lifetime, and how long an HTTP/2 session may stay open with no stream (then GOAWAY). Default 5 s. */
  keepAliveTimeout: duration.default(5000),
  /** Largest request header block, bytes; larger → 400. Default 8 KiB. */
  maxHeaderSize: z
    .number()
    .int()
    .min(1024)
    .max(64 * 1024)
    .default(8 * 1024),
  /**
   * Most connections open at once (Envoy's listener `max_connections`); more are closed as they
   * are accepted, before any TLS or HTTP byte. Default none (no cap).
   */
  maxConnections: z.number().int().min(1, 'expected a positive integer').optional(),
});
export type GatewayListenerSpec = z.output<typeof gatewayListenerSpec>;

/** A token bucket: `perSecond` sustained, `burst` at most (default `perSecond` rounded up). */
export const gatewayRateSpec = z.strictObject({
  perSecond: z.number().positive(),
  burst: z.number().int().min(1).optional(),
});
export type GatewayRateSpec = z.output<typeof gatewayRateSpec>;

/** Which identity fields an authenticator reads (claim names, or the identity service's JSON fields). */
const identityFields = {
  /** The subject (logged, `allow.subjects`). Default `sub`. */
  subjectClaim: z.string().min(1).default('sub'),
  /** The tenant id (rate limits, endpoint selection, `allow.tenants`). Default `tenant`. */
  tenantClaim: z.string().min(1).default('tenant'),
  /** The roles, an array or a space/comma separated string (`allow.roles`). Default `roles`. */
  rolesClaim: z.string().min(1).default('roles'),
};

const jwtAuth = z
  .strictObject({
    type: z.literal('jwt'),
    /** A file holding the HS256/384/512 shared secret (trailing newline ignored); relative to the config file's directory. */
    secretFile: z.string().min(1).optional(),
    /** An environment variable holding the shared secret (the common `JWT_SECRET_KEY`). */
    secretEnv: z.string().min(1).optional(),
    /** A JWKS URL for RS/PS/ES/EdDSA keys, fetched on first use, cached, refreshed on an unknown `kid`. */
    jwksUrl: z.url().optional(),
    /** Algorithms accepted. Default `[HS256]` with a secret, `[RS256, ES256, EdDSA]` with a JWKS. `none` is never accepted. */
    algorithms: z
      .array(
        z.enum(['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA']),
      )
      .min(1)
      .optional(),
    /** Required `iss` (one of). */
    issuer: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    /** Required `aud` (one of). */
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    /** Tolerance on `exp`, `nbf` and `iat`. Default 30 s. */
    clockSkew: duration.default(30_000),
    /** Claims sent upstream as headers: `claim: header-name`. Inbound copies of those headers are always removed. */
    claims: z.record(z.string().min(1), headerName).default({}),
    /** Keys older than this are re-fetched on the next request. Default 10 m. */
    jwksCacheTtl: duration.default(600_000),
    /** Least time between two JWKS fetches (an unknown `kid` inside it is refused without a fetch). Default 10 s. */
    jwksMinRefreshInterval: duration.default(10_000),
    /** Longest wait for the JWKS server. Default 2 s. */
    jwksTimeout: duration.default(2000),
    /**
     * Tokens whose signature, `iss` and `aud` were verified, kept (until `exp`) so a repeated token
     * is not verified again (Envoy's `jwt_cache_config`); `exp`/`nbf` are still checked on every use,
     * and a changed JWKS key set empties it. 0 turns it off. Default 10,000.
     */
    verifiedCacheSize: z.number().int().min(0).default(10_000),
    ...identityFields,
  })
  .refine((a) => [a.secretFile, a.secretEnv, a.jwksUrl].filter((x) => x !== undefined).length === 1, {
    message: 'a jwt authenticator needs exactly one of secretFile, secretEnv, jwksUrl',
  })
  .refine(
    (a) =>
      a.algorithms === undefined ||
      (a.jwksUrl === undefined
        ? a.algorithms.every((x) => x.startsWith('HS'))
        : a.algorithms.every((x) => !x.startsWith('HS'))),
    { message: 'HS* algorithms need a secret and the others a jwksUrl (no algorithm confusion)' },
  );

const validateAuth = z.strictObject({
  type: z.literal('validate'),
  /** `POST` here with the bearer token; 200 = allowed. A host that names an upstream goes through its balancer and pools. */
  url: z.url(),
  /** How long an answer (allowed or denied) is reused for the same token. Default 30 s. */
  cacheTtl: duration.default(30_000),
  /** Most tokens cached. Default 10,000. */
  cacheSize: z.number().int().min(1).default(10_000),
  /** Longest wait for the identity service. Default 2 s. */
  timeout: duration.default(2000),
  /** Fields of its JSON answer sent upstream as headers: `field: header-name`. */
  headers: z.record(z.string().min(1), headerName).default({}),
  /** Identity service unreachable or failing: `true` lets the request through unauthenticated. Default false (503 `auth_unavailable`). */
  failOpen: z.boolean().default(false),
  ...identityFields,
  subjectClaim: z.string().min(1).default('user_id'),
});

const apiKeyAuth = z.strictObject({
  type: z.literal('apiKey'),
  /** YAML/JSON file of `{ name, sha256, tenant?, rateLimit? }` entries (a list, or under `keys:`); watched; relative to the config file's directory. */
  file: z.string().min(1),
  /** Header the key comes in; `Authorization: Bearer KEY` is read too. Default `x-api-key`. */
  header: headerName.default('x-api-key'),
  /** Header the key's name is sent upstream in. Default `x-api-key-name`. */
  nameHeader: headerName.default('x-api-key-name'),
  /** Header the key's tenant is sent upstream in. Default `x-tenant-id`. */
  tenantHeader: headerName.default('x-tenant-id'),
});

/** A named authenticator in `gateway.auth`. */
export const gatewayAuthSpec = z.discriminatedUnion('type', [jwtAuth, validateAuth, apiKeyAuth]);
export type GatewayAuthSpec = z.output<typeof gatewayAuthSpec>;
export type JwtAuthSpec = Extract<GatewayAuthSpec, { type: 'jwt' }>;
export type ValidateAuthSpec = Extract<GatewayAuthSpec, { type: 'validate' }>;
export type ApiKeyAuthSpec = Extract<GatewayAuthSpec, { type: 'apiKey' }>;

const method = z
  .string()
  .regex(/^[A-Za-z]+$/, 'expected an HTTP method')
  .toUpperCase();

/** A gateway route: the outbound `routes` matcher plus methods and host, then auth, limits and CORS. */
export const gatewayRouteSpec = z.strictObject({
  /** The `route` label of the gateway metrics. Default `UPSTREAM#INDEX`. */
  name: z.string().min(1).max(64).optional(),
  match: z
    .strictObject({
      pathPrefix: z.string().startsWith('/', 'expected a path starting with "/"').optional(),
      /** The Host header (port ignored, case-insensitive); `*.example.com` matches one or more labels. */
      host: z.string().min(1).toLowerCase().optional(),
      methods: z.array(method).min(1).optional(),
      headers: z
        .array(
          z.strictObject({
            name: z.string().min(1),
            exact: z.string().optional(),
            present: z.boolean().optional(),
          }),
        )
        .default([]),
    })
    .prefault({}),
  upstream: upstreamName,
  stripPrefix: z.boolean().default(false),
  /** As in `routes`: match and forward the normalised path. Default true. */
  normalizePath: z.boolean().default(true),
  /** Authenticators (names in `gateway.auth`); the first that accepts wins. Omitted = public. */
  auth: z.array(z.string().min(1)).min(1).optional(),
  /** Who may call once authenticated; every listed kind must match (any value within a kind). */
  allow: z
    .strictObject({
      roles: z.array(z.string().min(1)).min(1).optional(),
      tenants: z.array(z.string().min(1)).min(1).optional(),
      keys: z.array(z.string().min(1)).min(1).optional(),
      subjects: z.array(z.string().min(1)).min(1).optional(),
      /** `claim: [values]`: the claim (or identity field) must hold one of them. */
      claims: z.record(z.string().min(1), z.array(z.string()).min(1)).optional(),
    })
    .optional(),
  /** A token bucket per caller: `by` key (API key name, else subject, else IP), tenant (else IP) or ip. */
  rateLimit: gatewayRateSpec.extend({ by: z.enum(['key', 'tenant', 'ip']).default('ip') }).optional(),
  cors: z
    .strictObject({
      /** Allowed origins (exact, e.g. `https://app.example`) or `["*"]` (not with `credentials`). */
      origins: z.array(z.string().min(1)).min(1),
      /** Default the route's methods, else GET, HEAD, POST. */
      methods: z.array(method).optional(),
      /** Request headers allowed. Default: those the preflight asks for. */
      headers: z.array(headerName).optional(),
      /** Response headers the browser may read. */
      exposeHeaders: z.array(headerName).default([]),
      /** `access-control-allow-credentials: true`; needs exact `origins` (`*` is refused). */
      credentials: z.boolean().default(false),
      /** `access-control-max-age`, seconds. Default 600. */
      maxAge: z.number().int().min(0).default(600),
    })
    .optional(),
  /** Largest request body, bytes; larger → 413. Default `gateway.maxRequestBodyBytes`. */
  maxRequestBodyBytes: z.number().int().min(0).optional(),
  /** Overrides the upstream's timeouts for this route. */
  timeouts: z
    .strictObject({ request: duration.optional(), perTry: duration.optional(), idle: duration.optional() })
    .optional(),
});
export type GatewayRouteSpec = z.output<typeof gatewayRouteSpec>;

/** A tenant: its rate limit and which endpoints its traffic may reach. */
export const tenantSpec = z.strictObject({
  /** One bucket for all of the tenant's requests, on every route that has auth. */
  rateLimit: gatewayRateSpec.optional(),
  /** The tenant's requests reach only endpoints carrying every one of these tags (none → 503). */
  upstreamTags: z.array(z.string().min(1)).min(1).optional(),
  /** `route upstream → upstream`: the tenant's requests go to another upstream instead. */
  upstreams: z.record(upstreamName, upstreamName).optional(),
});
export type TenantSpec = z.output<typeof tenantSpec>;

/** The `gateway` block. */
export const gatewaySpec = z
  .strictObject({
    auth: z.record(z.string().min(1), gatewayAuthSpec).default({}),
    routes: z.array(gatewayRouteSpec).default([]),
    tenants: z.record(z.string().min(1), tenantSpec).default({}),
    /**
     * What a tenant whose entry in `tenants` sets no `rateLimit` gets (a tenant not listed at all
     * included): `rateLimit`, a bucket of its own per tenant. Omitted = such tenants have no tenant limit.
     */
    tenantDefaults: z.strictObject({ rateLimit: gatewayRateSpec.optional() }).optional(),
    /** Proxies in front of the gateway whose `x-forwarded-for` entries are trusted (client IP). Default 0. */
    trustedProxies: z.number().int().min(0).max(16).default(0),
    /**
     * IPv6 clients share one rate-limit bucket per prefix of this many bits (an end site holds a
     * whole /64); IPv4 and IPv4-mapped IPv6 clients are keyed by their IPv4 address. Default 64.
     */
    rateLimitIpv6Prefix: z.number().int().min(32).max(128).default(64),
    /** Largest request body on any route, bytes. Default 1 MiB (nginx's `client_max_body_size`). */
    maxRequestBodyBytes: z
      .number()
      .int()
      .min(0)
      .default(1024 * 1024),
    /** More identity headers removed from every client request (beyond those authenticators set). */
    identityHeaders: z.array(headerName).default([]),
  })
  .superRefine((g, ctx) => {
    g.routes.forEach((route, i) => {
      for (const name of route.auth ?? []) {
        if (g.auth[name] === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, 'auth'],
            message: `names authenticator "${name}", which gateway.auth does not define`,
          });
        }
      }
      // `*` with credentials would mean "any site may read this with the user's cookies": browsers
      // refuse `*` beside credentials, so it could only work by echoing every origin (even `null`).
      if (route.cors?.credentials === true && route.cors.origins.includes('*')) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'cors', 'credentials'],
          message:
            'credentials: true needs exact origins, not "*" (any site could read responses with the user\'s cookies)',
        });
      }
      if ((route.allow !== undefined || route.rateLimit?.by === 'key') && route.auth === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i],
          message: 'allow and rateLimit.by: key need auth on the route',
        });
      }
    });
  });
export type GatewaySpec = z.output<typeof gatewaySpec>;
