// The gRPC admin server (listeners.adminGrpc): meshlet.admin.v1.Admin, grpc.health.v1.Health and server reflection.
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as HEALTH_PROTO } from 'grpc-health-check';
import { type AdminView, mutationAllowed, upstreamsView } from '../admin/admin-handler.ts';
import type { Logger } from '../telemetry/logger.ts';
import { ADMIN_SERVICE, adminDefinition } from './admin-proto.ts';
import { addHealthService } from './health-service.ts';
import { type UpstreamMessage, upstreamMessages } from './upstream-messages.ts';
import { UpstreamWatch } from './upstream-watch.ts';
import { LatestOnlyWriter, MAX_WATCH_STREAMS, refuseWatch } from './watch-stream.ts';

/** What the gRPC admin server reads from the daemon: the HTTP admin's view plus readiness notifications. */
export interface AdminGrpcView extends AdminView {
  /** Calls `onChange` when readiness may have changed (drain, undrain, shutdown); returns the unsubscribe. */
  onReadinessChange(onChange: () => void): () => void;
}

/** A running gRPC admin server. */
export interface AdminGrpcServer {
  readonly address: string;
  readonly port: number;
  /**
   * Ends every call (watch streams included, each after its last message: a health Watch sees
   * NOT_SERVING before its end) and closes the port. Resolves once closed, within
   * {@link CLOSE_GRACE_MS} (then whatever is left is cut).
   */
  close(): Promise<void>;
}

/** Longest wait for open calls to flush their last messages on close, ms. */
export const CLOSE_GRACE_MS = 250;

/**
 * Largest request message the admin API reads, bytes (grpc-js's default is 4 MiB): its requests
 * are an upstream name, a service name, a flag or a reflection query. A larger one ends with
 * RESOURCE_EXHAUSTED before it is decoded.
 */
export const MAX_REQUEST_BYTES = 16 * 1024;

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

/** `host:port` as gRPC targets write it (IPv6 in brackets). */
export function grpcTarget(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The caller's address from grpc-js's `getPeer()` (`127.0.0.1:5555`, `[::1]:5555`, `ipv4:…`). */
function peerAddress(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, '');
  const bracket = /^\[([^\]]+)\]/.exec(bare);
  if (bracket !== null) return bracket[1]!;
  const colon = bare.lastIndexOf(':');
  return colon === -1 ? bare : bare.slice(0, colon);
}

/** The admin-token rule for a mutating call; an error to answer with, or null when it may go on. */
function refusal(view: AdminView, call: grpc.ServerUnaryCall<unknown, unknown>): grpc.ServiceError | null {
  const token = view.adminToken?.();
  const authorization = call.metadata.get('authorization')[0];
  const given = typeof authorization === 'string' ? authorization : undefined;
  if (mutationAllowed(token, given, peerAddress(call.getPeer()))) return null;
  return token !== undefined
    ? statusError(
        grpc.status.UNAUTHENTICATED,
        'mutating admin calls need the admin token (authorization: Bearer TOKEN)',
      )
    : statusError(
        grpc.status.PERMISSION_DENIED,
        'mutating admin calls are allowed from loopback callers only',
      );
}

/** Longest part of a caller's upstream name echoed in a status message, characters. */
const ECHO_MAX = 128;

/**
 * A caller's name as a status message echoes it: cut to {@link ECHO_MAX} characters. The message
 * travels in the `grpc-message` trailer, and a long name (a request may be {@link MAX_REQUEST_BYTES})
 * would make a trailer clients refuse (8 KiB is a common header limit): they would see INTERNAL
 * instead of NOT_FOUND.
 */
function echoed(name: string): string {
  return name.length <= ECHO_MAX ? name : `${name.slice(0, ECHO_MAX)}… (${name.length} characters)`;
}

function statusError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** Every upstream as proto messages, with the registry's status. */
function snapshot(view: AdminView): { upstreams: UpstreamMessage[]; registry: unknown } {
  const { registry, upstreams } = upstreamsView(view) as {
    registry: unknown;
    upstreams: Record<string, unknown>;
  };
  return { upstreams: upstreamMessages(upstreams), registry };
}

/** The Admin service's handlers. */
function adminImplementation(view: AdminGrpcView, watch: UpstreamWatch): grpc.UntypedServiceImplementation {
  const listUpstreams: Unary<unknown, unknown> = (_call, done) => {
    const { upstreams, registry } = snapshot(view);
    done(null, { upstreams, registryJson: JSON.stringify(registry) });
  };
  const getUpstream: Unary<{ name: string }, unknown> = (call, done) => {
    const found = snapshot(view).upstreams.find((u) => u.name === call.request.name);
    if (found === undefined)
      done(statusError(grpc.status.NOT_FOUND, `no upstream ${echoed(call.request.name)}`));
    else done(null, found);
  };
  const resetBreaker: Unary<{ upstream: string }, unknown> = (call, done) => {
    const refused = refusal(view, call);
    if (refused !== null) return done(refused);
    const name = call.request.upstream;
    const upstream = view.table.has(name) ? view.table.get(name) : undefined;
    if (upstream === undefined)
      return done(statusError(grpc.status.NOT_FOUND, `no upstream ${echoed(name)}`));
    if (upstream.breaker === null) {
      return done(statusError(grpc.status.FAILED_PRECONDITION, `the circuit breaker of ${name} is disabled`));
    }
    upstream.breaker.reset();
    done(null, { upstream: upstream.name, circuitBreaker: upstream.breaker.state });
  };
  const drain: Unary<{ undo: boolean }, unknown> = (call, done) => {
    const refused = refusal(view, call);
    if (refused !== null) return done(refused);
    if (view.setDrained === undefined) return done(statusError(grpc.status.UNIMPLEMENTED, 'no drain here'));
    view.setDrained(!call.request.undo).then(
      (state) =>
        call.request.undo && state.shuttingDown
          ? done(statusError(grpc.status.FAILED_PRECONDITION, 'meshlet is shutting down'))
          : done(null, state),
      (err: Error) => done(statusError(grpc.status.INTERNAL, err.message)),
    );
  };
  const getConfig: Unary<unknown, unknown> = (_call, done) => {
    if (view.configDocument === undefined)
      return done(statusError(grpc.status.UNIMPLEMENTED, 'no config here'));
    const doc = view.configDocument();
    done(null, {
      configJson: JSON.stringify(doc),
      file: doc.file ?? '',
      lastReloadResult: doc.lastReload?.result ?? '',
    });
  };
  const watchUpstreams: grpc.handleServerStreamingCall<unknown, unknown> = (call) => {
    if (watch.size >= MAX_WATCH_STREAMS) return refuseWatch(call, 'WatchUpstreams');
    const writer = new LatestOnlyWriter(call);
    const remove = watch.add(
      (s) => writer.write(s),
      () => writer.end(),
    );
    call.on('cancelled', remove);
    call.on('close', remove);
  };
  return {
    ListUpstreams: listUpstreams,
    GetUpstream: getUpstream,
    ResetBreaker: resetBreaker,
    Drain: drain,
    GetConfig: getConfig,
    WatchUpstreams: watchUpstreams,
  } as grpc.UntypedServiceImplementation;
}

/**
 * Starts the gRPC admin server on `address:port` (port 0 = any free port): the Admin service from
 * protos/meshlet/admin/v1/admin.proto, grpc.health.v1.Health (see health-service.ts) and server
 * reflection over both, so `grpcurl -plaintext HOST:PORT list` needs no proto files. Rejects when
 * the port cannot be bound (the error's `code` is `EADDRINUSE` when it is taken).
 */
export async function startAdminGrpc(
  view: AdminGrpcView,
  address: string,
  port: number,
  logger: Logger,
): Promise<AdminGrpcServer> {
  const definition = adminDefinition([HEALTH_PROTO]);
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_REQUEST_BYTES });
  const watch = new UpstreamWatch(() => snapshot(view).upstreams);
  const admin = definition[ADMIN_SERVICE] as grpc.ServiceDefinition;
  server.addService(admin, adminImplementation(view, watch));
  const health = addHealthService(server, view, view.onReadinessChange);
  new ReflectionService(definition).addToServer(server);
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(grpcTarget(address, port), grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err === null) return resolve(p);
      const inUse = /EADDRINUSE|address already in use/i.test(err.message);
      reject(
        Object.assign(new Error(`gRPC admin ${grpcTarget(address, port)}: ${err.message}`), {
          code: inUse ? 'EADDRINUSE' : 'EBIND',
        }),
      );
    });
  }).catch((err: unknown) => {
    health.close();
    server.forceShutdown();
    throw err;
  });
  logger.debug({ msg: 'gRPC admin listening', address, port: bound });
  return {
    address,
    port: bound,
    close() {
      health.close();
      watch.close();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, CLOSE_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}
