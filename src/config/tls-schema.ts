// The mTLS part of the config schema: `listeners.inbound` and `tls`, with the cross-key checks zod cannot do alone.
import { z } from 'zod';
import { ConfigError } from '../errors/config-error.ts';
import { isValidTrustDomain } from '../tls/identity.ts';
import { duration } from './duration-schema.ts';

/** `listeners.inbound`: the mTLS listener peers' meshlets call; it forwards to 127.0.0.1:<service.port>. */
export const inboundListenerSpec = z.strictObject({
  /** Default `0.0.0.0` (peers reach it from other hosts). */
  address: z.string().min(1).default('0.0.0.0'),
  /** Default 15443; 0 = any free port. This is the port registered in Consul. */
  port: z.number().int().min(0).max(65535, 'expected a port in 0..65535').default(15443),
  /** Callers allowed: service names or full SPIFFE IDs, or `"*"` (any identity the trust bundle verifies). Default `"*"`. */
  allow: z.union([z.literal('*'), z.array(z.string().min(1))]).default('*'),
  /** Most inbound requests in flight; more get 503 `overloaded`. Default 1024. */
  maxConcurrent: z.number().int().min(1).default(1024),
  /** Token bucket per caller identity; over it → 429 `rate_limited` with `retry-after`. Default none. */
  rateLimit: z
    .strictObject({
      perSecond: z.number().positive(),
      /** Largest burst; default `perSecond` rounded up. */
      burst: z.number().int().min(1).optional(),
    })
    .optional(),
  /** Time a client has for the TLS handshake and then the request headers. Default 10 s. */
  headersTimeout: duration.default(10_000),
  /** Time a client has to send the whole request, body included (0 = none). Default 60 s. */
  requestTimeout: duration.default(60_000),
  /** Largest request header block a calling app may send, bytes (the listener accepts 1 KiB more for what the calling meshlet adds). Default 16 KiB. */
  maxHeaderSize: z
    .number()
    .int()
    .min(1024)
    .max(1024 * 1024)
    .default(16 * 1024),
  /** Lowest TLS version, inbound and outbound. Default `TLSv1.3`. */
  minTlsVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.3'),
  /** Longest wait for the local app's response headers. Default 15 s. */
  appTimeout: duration.default(15_000),
  /**
   * Most connections open at once (Envoy's listener `max_connections`); more are closed as they
   * are accepted, before their TLS handshake. Default none (no cap).
   */
  maxConnections: z.number().int().min(1, 'expected a positive integer').optional(),
});

/** `tls`: this instance's identity and trust bundle. */
export const tlsSpec = z.strictObject({
  /** `files` (cert, key, ca; watched) or `consul` (Consul Connect CA; needs registry.type consul). Default files. */
  source: z.enum(['files', 'consul']).default('files'),
  /** This instance's certificate, PEM (files). */
  cert: z.string().min(1).optional(),
  /** Its private key, PEM (files). */
  key: z.string().min(1).optional(),
  /** The trust bundle, PEM (files). */
  ca: z.string().min(1).optional(),
  /** Trust domain peers must belong to; default any the bundle verifies (files) or Consul's (consul). */
  trustDomain: z
    .string()
    .refine(isValidTrustDomain, 'expected a trust domain of lowercase a-z 0-9 . - _')
    .optional(),
});

/** The inbound listener settings with defaults filled in. */
export type InboundListenerConfig = z.output<typeof inboundListenerSpec>;
/** The tls section with defaults filled in. */
export type TlsConfig = z.output<typeof tlsSpec>;

interface TlsCheckInput {
  tls?: TlsConfig | undefined;
  service?: { name: string } | undefined;
  registry: { type: string };
  listeners: { inbound?: InboundListenerConfig | undefined };
}

/** Cross-key checks of `tls` and `listeners.inbound` (the files are resolved by `resolveConfigPaths`). */
export function checkTls(config: TlsCheckInput, file: string | undefined): void {
  const { tls } = config;
  if (tls === undefined) {
    if (config.listeners.inbound !== undefined) {
      throw new ConfigError('listeners.inbound', 'needs tls (the inbound listener speaks mTLS only)', file);
    }
    return;
  }
  if (config.listeners.inbound !== undefined && config.service === undefined) {
    throw new ConfigError('service', 'required with listeners.inbound (requests go to service.port)', file);
  }
  if (tls.source === 'files') {
    for (const k of ['cert', 'key', 'ca'] as const) {
      if (tls[k] === undefined) throw new ConfigError(`tls.${k}`, 'required with tls.source files', file);
    }
    return;
  }
  if (config.registry.type !== 'consul') {
    throw new ConfigError('tls.source', 'consul needs registry.type consul', file);
  }
  if (config.service === undefined) {
    throw new ConfigError('service', 'required with tls.source consul (the leaf is for service.name)', file);
  }
  for (const k of ['cert', 'key', 'ca'] as const) {
    if (tls[k] !== undefined) throw new ConfigError(`tls.${k}`, 'only with tls.source files', file);
  }
}
