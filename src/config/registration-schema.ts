// The registration keys the etcd and redis registries share: service id, weights and meshlet's probe of the local app.
import { z } from 'zod';
import { duration } from './duration-schema.ts';

/** meshlet's probe of the local app; its result is written into this instance's record. */
export const instanceCheck = z
  .strictObject({
    /** HTTP path probed with GET on 127.0.0.1:service.port (2xx passing, 429 warning, else critical). */
    http: z.string().startsWith('/', 'expected a path starting with "/"').optional(),
    /** gRPC health probe (`grpc.health.v1.Health/Check`) for this service name; `""` = the whole server. */
    grpc: z.string().optional(),
    /** TCP connect probe on 127.0.0.1:service.port; the default when neither `http` nor `grpc` is set. */
    tcp: z.boolean().optional(),
    /** Time between probes. Default 10 s. */
    interval: duration.default(10_000),
    /** Time one probe may take. Default 2 s. */
    timeout: duration.default(2000),
    /** Consecutive successes before a critical app is reported passing again. Default 1. */
    successThreshold: z.number().int().min(1).default(1),
    /** Consecutive failures before a passing app is reported critical. Default 1. */
    failureThreshold: z.number().int().min(1).default(1),
  })
  .superRefine((check, ctx) => {
    if (check.grpc !== undefined && (check.http !== undefined || check.tcp === true)) {
      const other = check.http !== undefined ? 'http' : 'tcp: true';
      ctx.addIssue({ code: 'custom', path: ['grpc'], message: `set either grpc or ${other}, not both` });
    }
    if (check.http !== undefined && check.tcp === true) {
      ctx.addIssue({ code: 'custom', path: ['tcp'], message: 'set either http or tcp: true, not both' });
    }
    if (check.timeout >= check.interval) {
      ctx.addIssue({
        code: 'custom',
        path: ['timeout'],
        message: 'must be shorter than registry.check.interval',
      });
    }
  })
  .prefault({});

/** Registration keys of `registry` for etcd and redis (the same meaning as Consul's). */
export const registrationKeys = {
  /** Register `service`. Default: true when `service` is set. */
  register: z.boolean().optional(),
  /** Instance id; default `<service.name>-<hostname>-<service.port>` (stable across restarts). */
  serviceId: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'expected letters, digits, "-", "_", ".", ":" (at most 128)')
    .optional(),
  /** Weight peers' balancers read while the app passes, and while it warns (HTTP 429). Defaults 1 and 1. */
  weights: z
    .strictObject({
      passing: z.number().int().min(1).max(10_000).default(1),
      warning: z.number().int().min(1).max(10_000).default(1),
    })
    .prefault({}),
  check: instanceCheck,
};

/** TLS to a registry server: CA bundle, client certificate and key (PEM files; relative to the config file's directory). */
export const clientTls = z.strictObject({
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  /** Name the server certificate must carry; default the host dialled. */
  serverName: z.string().min(1).optional(),
});

/** A registry key prefix: non-empty, without whitespace. */
export const keyPrefix = z.string().regex(/^\S+$/, 'expected a non-empty prefix without whitespace');
