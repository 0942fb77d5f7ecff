// Opening an outbound tunnel: admission, a balanced endpoint dialled with retries, the handshake, then the relay.
import { type ClientRequest, type IncomingMessage, request as httpRequest } from 'node:http';
import type { Socket } from 'node:net';
import { MeshletError } from '../errors/meshlet-error.ts';
import type { ProxyContext } from '../proxy/proxy-context.ts';
import { CLIENT_CLOSED } from '../telemetry/access-log.ts';
import { classifyFailure, errorForFailure } from '../proxy/upstream-failure.ts';
import { noteFdExhaustion } from '../proxy/fd-exhaustion.ts';
import { type Admission, REFUSED } from '../resilience/circuit-breaker.ts';
import { timerDelay } from '../resilience/timer-delay.ts';
import type { TunnelKind, TunnelMetrics } from '../telemetry/tunnel-metrics.ts';
import type { EndpointHandle } from '../upstream/endpoint.ts';
import type { Upstream } from '../upstream/upstream.ts';
import type { RequestPolicy } from '../upstream/upstream-settings.ts';
import type { EndpointDialer } from './dial.ts';
import { rawHead, refuseRaw } from '../errors/raw-error.ts';
import { Tunnel, type TunnelSet } from './tunnel.ts';
import { TunnelAccess, type TunnelLineEnd } from './tunnel-access.ts';

/** What opening tunnels needs from the daemon. */
export interface TunnelContext {
  readonly proxy: ProxyContext;
  readonly metrics: TunnelMetrics;
  readonly tunnels: TunnelSet;
  readonly dial: EndpointDialer;
}

/**
 * What is sent once a connection to an endpoint is up: the HTTP request that asks for the tunnel
 * (an upgrade, or CONNECT to a peer meshlet), or nothing (a plain CONNECT tunnel is the connection).
 */
export type Handshake = (socket: Socket, handle: EndpointHandle) => ClientRequest | null;

/**
 * One tunnel request on the outbound side. Admission (concurrency limit, breaker) holds for the
 * handshake only: an established tunnel holds no request slot. Connect failures are retried on
 * another endpoint (nothing was sent; within `retries.attempts` and the budget); once the
 * handshake was sent nothing is retried. A connection that reached one of meshlet's own listeners
 * (the upstream's forwarding-loop check, run on each dial) is closed before any byte and its
 * endpoint set aside: the tunnel moves to another endpoint, counted against nothing, else gets 503
 * no_healthy_endpoints. The endpoint's outlier detector and the breaker hear how the handshake
 * went: a connect failure, a 5xx or no answer in time count against them.
 */
export class TunnelExchange {
  readonly #ctx: TunnelContext;
  readonly #kind: TunnelKind;
  readonly #client: Socket;
  readonly #clientHead: Buffer;
  readonly #upstream: Upstream;
  readonly #policy: RequestPolicy;
  readonly #handshake: Handshake;
  readonly #requestId: string;
  /** The tunnel's one access line. */
  readonly #line: TunnelAccess;
  readonly #startedAt = performance.now();
  #admission: Admission = REFUSED;
  #holdsRequest = false;
  #attempts = 0;
  #handle: EndpointHandle | undefined;
  /** The connection to the endpoint while the handshake is in flight (destroyed if the client leaves). */
  #pending: Socket | null = null;
  #done = false;

  constructor(
    ctx: TunnelContext,
    kind: TunnelKind,
    client: Socket,
    clientHead: Buffer,
    upstream: Upstream,
    policy: RequestPolicy,
    request: { method: string; path: string; requestId: string },
    handshake: Handshake,
  ) {
    this.#ctx = ctx;
    this.#kind = kind;
    this.#client = client;
    this.#clientHead = clientHead;
    this.#upstream = upstream;
    this.#policy = policy;
    this.#handshake = handshake;
    this.#requestId = request.requestId;
    this.#line = new TunnelAccess(ctx.proxy.access, {
      direction: 'outbound',
      kind,
      requestId: request.requestId,
      method: request.method,
      path: request.path,
      upstream: upstream.name,
    });
  }

  /** Admits the tunnel and dials the first endpoint. */
  start(): void {
    const upstream = this.#upstream;
    this.#client.on('error', () => this.#abandon());
    this.#client.on('close', () => this.#abandon());
    const admitted = upstream.admit(this.#policy.retry);
    if (admitted instanceof MeshletError) {
      this.#fail(admitted);
      return;
    }
    this.#holdsRequest = true;
    this.#admission = admitted;
    void this.#attempt();
  }

  async #attempt(): Promise<void> {
    const upstream = this.#upstream;
    const handle = upstream.pick(undefined, this.#handle);
    if (handle === undefined) {
      this.#fail(
        new MeshletError(
          'no_healthy_endpoints',
          `upstream "${upstream.name}" has no usable endpoint`,
          upstream.name,
        ),
      );
      return;
    }
    this.#handle = handle;
    this.#attempts++;
    handle.active++;
    let socket: Socket;
    try {
      socket = await this.#ctx.dial(
        handle.endpoint,
        upstream.name,
        upstream.settings.connectTimeoutMs,
        upstream.connectCheck(handle.endpoint),
      );
    } catch (err) {
      handle.active--;
      this.#connectFailed(handle, err as Error);
      return;
    }
    if (this.#done) {
      handle.active--;
      socket.destroy();
      return;
    }
    this.#pending = socket;
    const req = this.#handshake(socket, handle);
    if (req === null) {
      // A plain CONNECT tunnel: the connection is the tunnel.
      handle.active--;
      upstream.outlier.onSuccess(handle);
      this.#client.write('HTTP/1.1 200 Connection established\r\n\r\n');
      this.#established(socket, Buffer.alloc(0));
      return;
    }
    const timer = setTimeout(
      () =>
        req.destroy(
          Object.assign(new Error('no answer to the handshake in time'), { code: 'MESHLET_ATTEMPT_TIMEOUT' }),
        ),
      // Clamped: a `timeouts.request: 1000h` (over 2^31 − 1 ms) would otherwise fire after 1 ms.
      timerDelay(this.#policy.perTryTimeoutMs),
    );
    const settle = (): void => {
      clearTimeout(timer);
      handle.active--;
      this.#pending = null;
    };
    const onOpen = (res: IncomingMessage, upSocket: Socket, upHead: Buffer): void => {
      settle();
      // The client left while the answer was on its way (#abandon destroyed the connection, but
      // node:http may have parsed the 101 already): there is no one to open a tunnel for.
      if (this.#done) {
        upSocket.destroy();
        return;
      }
      upstream.outlier.onSuccess(handle);
      if (res.statusCode !== 101 && res.statusCode !== 200) {
        // A CONNECT a peer meshlet refused: pass its answer on.
        this.#passAnswer(res, upSocket);
        return;
      }
      this.#client.write(
        rawHead(res.statusCode ?? 101, res.statusMessage ?? '', responseHeaders(res, this.#kind)),
      );
      this.#established(upSocket, upHead);
    };
    req.once('upgrade', onOpen);
    req.once('connect', onOpen);
    req.once('response', (res: IncomingMessage) => {
      settle();
      if (this.#done) {
        socket.destroy();
        return;
      }
      const status = res.statusCode ?? 502;
      if (status === 101) {
        // node:http emits 'upgrade' only for a 101 that names the protocol: one without `Upgrade`
        // (RFC 9110 §15.2.2 requires it) switches to nothing a client could speak.
        socket.destroy();
        this.#reportOutlier(handle, 'gateway');
        this.#fail(
          new MeshletError(
            'upstream_unreachable',
            `upstream "${upstream.name}" answered 101 without an Upgrade header`,
            upstream.name,
          ),
        );
        return;
      }
      if (status >= 500) this.#reportOutlier(handle, status >= 502 && status <= 504 ? 'gateway' : '5xx');
      else upstream.outlier.onSuccess(handle);
      this.#passAnswer(res, socket);
    });
    req.once('error', (err: Error) => {
      settle();
      if (this.#done) return;
      const kind = classifyFailure(err, true);
      this.#reportOutlier(handle, 'gateway');
      this.#fail(
        errorForFailure(kind === 'aborted' ? 'reset' : kind, err, upstream.name, handle.endpoint.id),
      );
    });
    req.end();
  }

  #connectFailed(handle: EndpointHandle, err: Error): void {
    const upstream = this.#upstream;
    const kind = classifyFailure(err, false);
    if (kind === 'loop') {
      // The endpoint is meshlet's own listener, found once connected (nothing sent): its upstream
      // set it aside (forwarding-loop.ts). The tunnel goes on as if it had never been picked: no
      // failure counted, no retry spent; another endpoint, else 503 no_healthy_endpoints.
      this.#attempts--;
      this.#handle = undefined;
      if (!this.#done) void this.#attempt();
      return;
    }
    if (kind === 'exhausted') {
      // meshlet's own fd limit, not the endpoint's failure: no outlier count, no retry.
      noteFdExhaustion(this.#ctx.proxy.logger, err, upstream.name);
      this.#fail(errorForFailure('exhausted', err, upstream.name, handle.endpoint.id));
      return;
    }
    upstream.metrics.connectErrors.inc();
    this.#ctx.proxy.metrics.resilience.attempts.labels(upstream.name, 'connect_failure').inc();
    this.#reportOutlier(handle, 'connect');
    if (this.#done) return;
    const retry = this.#policy.retry;
    if (this.#attempts < retry.attempts && upstream.budget(retry).tryRetry()) {
      this.#ctx.proxy.metrics.resilience.retries.labels(upstream.name, 'connect-failure').inc();
      void this.#attempt();
      return;
    }
    this.#fail(errorForFailure('connect', err, upstream.name, handle.endpoint.id));
  }

  #reportOutlier(handle: EndpointHandle, kind: 'connect' | 'gateway' | '5xx'): void {
    if (this.#upstream.outlier.onFailure(handle, kind)) {
      this.#ctx.proxy.metrics.resilience.ejections.labels(this.#upstream.name, kind).inc();
    }
  }

  /** The upstream answered without opening the tunnel: its answer goes to the client as it is, then both close. */
  #passAnswer(res: IncomingMessage, upSocket: Socket): void {
    const status = res.statusCode ?? 502;
    this.#count('refused');
    this.#release(status < 500);
    this.#done = true;
    passAnswer(this.#client, res, upSocket);
    this.#log(status);
  }

  #established(upSocket: Socket, upHead: Buffer): void {
    this.#done = true;
    this.#count('established');
    this.#release(true);
    const status = this.#kind === 'connect' ? 200 : 101;
    const tunnel = new Tunnel(this.#client, upSocket, this.#clientHead, upHead, this.#ctx.metrics, {
      kind: this.#kind,
      direction: 'outbound',
      upstream: this.#upstream.name,
      idleMs: this.#upstream.settings.upgradeIdleMs,
      onEnd: (relayed) => this.#log(status, undefined, relayed),
    });
    this.#ctx.tunnels.add(tunnel);
  }

  /** Answers with meshlet's own error (raw HTTP on the client's socket) and finishes. */
  #fail(err: MeshletError): void {
    if (this.#done) return;
    this.#done = true;
    this.#count('failed');
    this.#upstream.metrics.localReply(err.code);
    this.#release(err.code !== 'upstream_timeout' && err.code !== 'upstream_unreachable');
    refuseRaw(this.#client, err, this.#requestId, this.#attempts);
    this.#log(err.status, err.code);
  }

  /**
   * The client went away during the handshake: the connection to the endpoint is dropped (the
   * endpoint is not to blame, so neither outlier detection nor the breaker hear a failure) and the
   * handshake counts as `failed` with a 499 access line.
   */
  #abandon(): void {
    if (this.#done) return;
    this.#done = true;
    // Destroying the connection makes the handshake request fail; its error handler sees #done.
    this.#pending?.destroy();
    this.#pending = null;
    this.#count('failed');
    this.#release(true);
    this.#log(CLIENT_CLOSED);
  }

  #release(success: boolean): void {
    if (this.#holdsRequest) {
      this.#holdsRequest = false;
      this.#upstream.limits.releaseRequest();
    }
    const admission = this.#admission;
    this.#admission = REFUSED;
    if (admission !== REFUSED) this.#upstream.breaker?.settle(admission, success);
  }

  #count(result: 'established' | 'refused' | 'failed'): void {
    this.#ctx.metrics.opened.inc({
      direction: 'outbound',
      upstream: this.#upstream.name,
      kind: this.#kind,
      result,
    });
  }

  /** Counts the finished handshake (or tunnel) and writes its access line. */
  #log(status: number, error?: string, relayed?: TunnelLineEnd['relayed']): void {
    const seconds = (performance.now() - this.#startedAt) / 1000;
    this.#upstream.metrics.finished(status, seconds);
    this.#line.write({
      status,
      error,
      endpoint: this.#handle?.endpoint.id ?? null,
      attempts: this.#attempts,
      relayed,
    });
  }
}

/**
 * Passes an answer that opened no tunnel to the client as it is (status, headers, body), then
 * closes both connections: the client's socket left node:http's parser, so it carries one answer.
 */
export function passAnswer(client: Socket, res: IncomingMessage, upSocket: Socket): void {
  const headers: string[] = [];
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i]!.toLowerCase();
    if (name === 'connection' || name === 'transfer-encoding' || name === 'keep-alive') continue;
    headers.push(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
  }
  headers.push('connection', 'close');
  client.write(rawHead(res.statusCode ?? 502, res.statusMessage ?? '', headers));
  res.pipe(client);
  res.once('end', () => upSocket.destroy());
  res.once('error', () => client.destroy());
}

/** The headers of the upstream's 101 (or 200) that go to the client, with the upgrade restated. */
export function responseHeaders(res: IncomingMessage, kind: TunnelKind): string[] {
  const out: string[] = [];
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i]!.toLowerCase();
    if (name === 'connection' || name === 'upgrade' || name === 'keep-alive' || name === 'transfer-encoding')
      continue;
    out.push(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
  }
  if (kind !== 'connect')
    out.push('Upgrade', String(res.headers.upgrade ?? 'websocket'), 'Connection', 'Upgrade');
  return out;
}

/**
 * An HTTP/1.1 request on an already connected socket (the handshake of an upgrade or a CONNECT),
 * with exactly the headers given: node:http would otherwise frame a bodiless POST or PUT (Docker's
 * `POST …/attach` with `Upgrade: tcp`) as chunked, and its terminating `0\r\n\r\n` would land in the
 * upgraded stream.
 */
export function requestOn(
  socket: Socket,
  method: string,
  path: string,
  headers: readonly string[],
): ClientRequest {
  return httpRequest({
    method,
    path,
    headers: headers as unknown as Record<string, string>,
    setDefaultHeaders: false,
    createConnection: () => socket,
  });
}
