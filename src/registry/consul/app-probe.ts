// meshlet's probe of the local app (HTTP GET, gRPC health or TCP connect) and the consecutive-threshold status it yields.
import { connect } from 'node:net';
import { request } from '../../control-plane/control-request.ts';
import { GrpcHealthProbe } from './grpc-health-probe.ts';

/** A Consul check status. */
export type CheckStatus = 'passing' | 'warning' | 'critical';

/** One probe's outcome; `output` is what the Consul UI shows as the check's output. */
export interface ProbeResult {
  status: CheckStatus;
  output: string;
}

/**
 * What to probe: `grpc.health.v1.Health/Check` on 127.0.0.1:port when `grpcService` is set, else
 * `GET http://127.0.0.1:port<path>` when `httpPath` is set, else a TCP connect.
 */
export interface ProbeTarget {
  port: number;
  httpPath?: string | undefined;
  /** The service named in the gRPC health request; `""` = the whole server. */
  grpcService?: string | undefined;
  /** Time one probe may take, ms. */
  timeoutMs: number;
  /** Time between probes, ms (paces the gRPC channel's redials). Default 10 s. */
  intervalMs?: number | undefined;
}

const MAX_OUTPUT_BODY = 256;

/** An HTTP probe, judged like Consul's HTTP checks: 2xx passing, 429 warning, anything else critical. */
async function probeHttp(url: string, timeoutMs: number): Promise<ProbeResult> {
  try {
    const res = await request(url, {
      method: 'GET',
      headers: { 'user-agent': 'meshlet-health-check', accept: 'text/plain, text/*, */*' },
      reset: true,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.body.text()).slice(0, MAX_OUTPUT_BODY);
    const code = res.statusCode;
    const status: CheckStatus = code >= 200 && code < 300 ? 'passing' : code === 429 ? 'warning' : 'critical';
    return { status, output: `HTTP GET ${url}: ${code} Output: ${body}` };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const reason = e.name === 'TimeoutError' ? `timed out after ${timeoutMs} ms` : (e.code ?? e.message);
    return { status: 'critical', output: `HTTP GET ${url}: ${reason}` };
  }
}

/** A TCP connect probe: passing when the port accepts within the timeout. */
function probeTcp(port: number, timeoutMs: number): Promise<ProbeResult> {
  const target = `127.0.0.1:${port}`;
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (result: ProbeResult): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => done({ status: 'critical', output: `TCP connect ${target}: timed out after ${timeoutMs} ms` }),
      timeoutMs,
    );
    socket.once('connect', () => done({ status: 'passing', output: `TCP connect ${target}: Success` }));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done({ status: 'critical', output: `TCP connect ${target}: ${err.code ?? err.message}` }),
    );
  });
}

/** Probes the local app once by HTTP or TCP (`grpcService` is for `createProber`). Never rejects. */
export function probeApp(target: ProbeTarget): Promise<ProbeResult> {
  return target.httpPath === undefined
    ? probeTcp(target.port, target.timeoutMs)
    : probeHttp(`http://127.0.0.1:${target.port}${target.httpPath}`, target.timeoutMs);
}

/** Probes the local app again and again; holds what probes share (the gRPC channel). */
export interface AppProber {
  /** One probe; never rejects. */
  probe(): Promise<ProbeResult>;
  /** Releases the channel, if any. */
  close(): void;
}

/** The prober for a target: gRPC health (one channel, closed by `close`), or HTTP / TCP (stateless). */
export function createProber(target: ProbeTarget): AppProber {
  if (target.grpcService === undefined) return { probe: () => probeApp(target), close: () => {} };
  const grpc = new GrpcHealthProbe({
    port: target.port,
    service: target.grpcService,
    timeoutMs: target.timeoutMs,
    intervalMs: target.intervalMs ?? 10_000,
  });
  return { probe: () => grpc.probe(), close: () => grpc.close() };
}

/** The probe as the Consul check's name says it: `TCP connect`, `HTTP GET /health`, `gRPC Health/Check "users"`. */
export function describeProbe(target: ProbeTarget): string {
  if (target.grpcService !== undefined) {
    return `gRPC Health/Check ${target.grpcService === '' ? '(whole server)' : JSON.stringify(target.grpcService)}`;
  }
  return target.httpPath === undefined ? 'TCP connect' : `HTTP GET ${target.httpPath}`;
}

/**
 * The status reported for a series of probes: the first probe decides; afterwards a passing app
 * turns critical after `failureThreshold` consecutive failed probes, a critical one passing after
 * `successThreshold` consecutive good ones (Kubernetes' probe thresholds; Consul's
 * `FailuresBeforeCritical`/`SuccessBeforePassing`). Warning (HTTP 429) counts as an answer.
 */
export class ProbeStatus {
  readonly #successThreshold: number;
  readonly #failureThreshold: number;
  #status: CheckStatus | undefined;
  #successes = 0;
  #failures = 0;
  #output = 'not probed yet';

  constructor(successThreshold: number, failureThreshold: number) {
    this.#successThreshold = successThreshold;
    this.#failureThreshold = failureThreshold;
  }

  /** The reported status; undefined before the first probe. */
  get status(): CheckStatus | undefined {
    return this.#status;
  }

  /** The last probe's output, with a note while a threshold is pending. */
  get output(): string {
    return this.#output;
  }

  /** Folds in one probe result; returns the reported status. */
  record(result: ProbeResult): CheckStatus {
    const ok = result.status !== 'critical';
    if (ok) {
      this.#successes++;
      this.#failures = 0;
    } else {
      this.#failures++;
      this.#successes = 0;
    }
    const current = this.#status;
    let note = '';
    if (current === undefined) this.#status = result.status;
    else if (!ok && current !== 'critical') {
      if (this.#failures >= this.#failureThreshold) this.#status = 'critical';
      else note = ` (${this.#failures} of ${this.#failureThreshold} failures before critical)`;
    } else if (ok && current === 'critical') {
      if (this.#successes >= this.#successThreshold) this.#status = result.status;
      else note = ` (${this.#successes} of ${this.#successThreshold} successes before passing)`;
    } else if (ok) this.#status = result.status;
    this.#output = result.output + note;
    return this.#status!;
  }
}
