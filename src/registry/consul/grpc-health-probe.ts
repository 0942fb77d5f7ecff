// meshlet's gRPC probe of the local app: grpc.health.v1.Health/Check over one reused channel, grpc-js loaded on first use.
import type * as GrpcJs from '@grpc/grpc-js';
import type { CheckStatus, ProbeResult } from './app-probe.ts';

/** The health method as grpc-health-check's proto-loader definition describes it (keepCase, enums as strings). */
interface CheckMethod {
  path: string;
  requestSerialize: (value: { service: string }) => Buffer;
  responseDeserialize: (bytes: Buffer) => { status?: string };
}

interface GrpcModules {
  grpc: typeof GrpcJs;
  check: CheckMethod;
}

let loading: Promise<GrpcModules> | undefined;

/**
 * `@grpc/grpc-js` and the `grpc.health.v1` definition of `grpc-health-check`, imported once on the
 * first gRPC probe: a daemon without `check.grpc` never loads them (idle memory). A failed import is
 * tried again on the next probe.
 */
function loadGrpc(): Promise<GrpcModules> {
  loading ??= Promise.all([import('@grpc/grpc-js'), import('grpc-health-check')]).then(
    ([grpc, health]) => ({ grpc, check: health.service.Check as unknown as CheckMethod }),
    (err: unknown) => {
      loading = undefined;
      throw err;
    },
  );
  return loading;
}

/**
 * A `HealthCheckResponse.status` judged like Consul's gRPC checks: `SERVING` is passing; `NOT_SERVING`,
 * `SERVICE_UNKNOWN`, `UNKNOWN` and anything else critical (gRPC health has no warning).
 */
export function healthCheckStatus(servingStatus: string | undefined): CheckStatus {
  return servingStatus === 'SERVING' ? 'passing' : 'critical';
}

/** Longest part of a failed call's details kept in the check output, characters. */
const MAX_DETAILS = 256;

/** Options of a gRPC health probe. */
export interface GrpcHealthProbeOptions {
  /** The local app's port, on 127.0.0.1 (plaintext h2c). */
  port: number;
  /** `HealthCheckRequest.service`; `""` asks about the whole server. */
  service: string;
  /** Deadline of one Check call, ms. */
  timeoutMs: number;
  /** Time between probes, ms: while the app is down the channel redials at least every half of it (at most every 100 ms, at least every 1 s). */
  intervalMs: number;
}

/**
 * Probes the local app with `grpc.health.v1.Health/Check`, like Consul's own gRPC checks, over one
 * channel kept between probes (grpc-js redials it when the app restarts). A call that fails (refused
 * connection, deadline = `timeoutMs`, an error status such as NOT_FOUND for a service the app does
 * not know) is critical, with the gRPC status and reason in the output. Never rejects.
 */
export class GrpcHealthProbe {
  readonly #options: GrpcHealthProbeOptions;
  /** `127.0.0.1:PORT` or `127.0.0.1:PORT/SERVICE`, as Consul writes a gRPC check's target. */
  readonly target: string;
  #client: GrpcJs.Client | null = null;
  #closed = false;

  constructor(options: GrpcHealthProbeOptions) {
    this.#options = options;
    const address = `127.0.0.1:${options.port}`;
    this.target = options.service === '' ? address : `${address}/${options.service}`;
  }

  /** One Check call; resolves with its result. */
  async probe(): Promise<ProbeResult> {
    const prefix = `gRPC Health/Check ${this.target}`;
    let modules: GrpcModules;
    try {
      modules = await loadGrpc();
    } catch (err) {
      return {
        status: 'critical',
        output: `${prefix}: cannot load @grpc/grpc-js: ${(err as Error).message}`,
      };
    }
    if (this.#closed) return { status: 'critical', output: `${prefix}: probe stopped` };
    const { grpc, check } = modules;
    const { timeoutMs, service } = this.#options;
    const client = (this.#client ??= this.#connect(grpc));
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        check.path,
        check.requestSerialize,
        check.responseDeserialize,
        { service },
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, reply) => {
          if (err !== null) {
            const code = grpc.status[err.code] ?? String(err.code);
            const reason =
              err.code === grpc.status.DEADLINE_EXCEEDED
                ? `timed out after ${timeoutMs} ms`
                : err.details.replace(/\.? Resolution note: ?$/, '').slice(0, MAX_DETAILS);
            resolve({ status: 'critical', output: `${prefix}: ${code}: ${reason}` });
            return;
          }
          const serving = reply?.status ?? 'UNKNOWN';
          resolve({ status: healthCheckStatus(serving), output: `${prefix}: ${serving}` });
        },
      );
    });
  }

  #connect(grpc: typeof GrpcJs): GrpcJs.Client {
    const backoffMs = Math.round(Math.max(100, Math.min(this.#options.intervalMs / 2, 1000)));
    return new grpc.Client(`127.0.0.1:${this.#options.port}`, grpc.credentials.createInsecure(), {
      // The app is on loopback: an HTTP proxy from the environment must not carry the probe.
      'grpc.enable_http_proxy': 0,
      // grpc-js backs off up to 120 s by default; an app that came back must be seen by the next probe.
      'grpc.initial_reconnect_backoff_ms': backoffMs,
      'grpc.max_reconnect_backoff_ms': backoffMs,
    });
  }

  /** Closes the channel; later probes answer critical without dialling. */
  close(): void {
    this.#closed = true;
    this.#client?.close();
    this.#client = null;
  }
}
