// Real @grpc/grpc-js servers and clients of the Echo test service (protos/meshlet/test/v1/echo.proto).
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const PROTO = fileURLToPath(new URL('../../protos/meshlet/test/v1/echo.proto', import.meta.url));

export interface EchoRequest {
  message?: string;
  delayMs?: number;
  failCode?: number;
}
export interface EchoReply {
  message: string;
  servedBy: string;
  index: number;
}

/** A method of the generated client (its argument shapes vary by call shape). */
type Method = (...args: unknown[]) => unknown;
/** An Echo client instance: grpc-js's Client with the service's four methods. */
export type EchoStub = grpc.Client & {
  Unary: Method;
  ServerStream: Method;
  ClientStream: Method;
  Bidi: Method;
};

type EchoClientCtor = new (
  target: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => EchoStub;

const definition = loadSync(PROTO, { keepCase: false, longs: Number, defaults: true });
const pkg = grpc.loadPackageDefinition(definition) as unknown as {
  meshlet: { test: { v1: { Echo: EchoClientCtor & { service: grpc.ServiceDefinition } } } };
};
/** The generated Echo client class (grpc-js). */
export const EchoClient = pkg.meshlet.test.v1.Echo;

/** What the server saw of one call. */
export interface SeenCall {
  method: string;
  metadata: grpc.Metadata;
  /** The deadline the call arrived with (grpc-js parses `grpc-timeout` into it), ms from arrival; Infinity without one. */
  budgetMs: number;
}

/** What the server records of a call. */
function seen(method: string, call: { metadata: grpc.Metadata; getDeadline(): grpc.Deadline }): SeenCall {
  const deadline = call.getDeadline();
  const at = typeof deadline === 'number' ? deadline : deadline.getTime();
  return {
    method,
    metadata: call.metadata,
    budgetMs: Number.isFinite(at) ? at - Date.now() : Number.POSITIVE_INFINITY,
  };
}

export interface EchoServer {
  readonly port: number;
  /** `127.0.0.1:port`. */
  readonly endpoint: string;
  readonly name: string;
  readonly calls: SeenCall[];
  /** Graceful shutdown (GOAWAY, in-flight calls finish). */
  shutdown(): Promise<void>;
  /** Immediate stop. */
  close(): void;
}

/** Trailing metadata the server adds to every call: `x-served-by`, and `x-trailer` echoing request `x-echo`. */
function trailers(name: string, md: grpc.Metadata): grpc.Metadata {
  const out = new grpc.Metadata();
  out.set('x-served-by', name);
  const echo = md.get('x-echo')[0];
  if (echo !== undefined) out.set('x-trailer', String(echo));
  return out;
}

/** How a test server misbehaves. */
export interface EchoBehaviour {
  /** Fail every unary call with this gRPC status (Trailers-Only), whatever the request asks. */
  failUnary?: number;
}

/**
 * Starts an Echo server on 127.0.0.1 (h2c). Unary honours `delayMs` and `failCode`; a failed call
 * answers in trailers-only form, as grpc-js does for an error before any message. ServerStream
 * ends with `failCode` after its replies when one is asked for.
 * @param name reported as `servedBy`; default the port.
 */
export async function startEchoServer(name?: string, behaviour: EchoBehaviour = {}): Promise<EchoServer> {
  const server = new grpc.Server();
  const calls: SeenCall[] = [];
  let who = name ?? '';
  server.addService(EchoClient.service, {
    Unary(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) {
      calls.push(seen('Unary', call));
      const { message = '', delayMs = 0 } = call.request;
      const failCode = behaviour.failUnary ?? call.request.failCode ?? 0;
      const answer = (): void => {
        if (failCode !== 0) {
          callback({
            code: failCode,
            details: `failed with ${failCode}`,
            metadata: trailers(who, call.metadata),
          });
          return;
        }
        callback(null, { message, servedBy: who, index: 0 }, trailers(who, call.metadata));
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    },
    ServerStream(
      call: grpc.ServerWritableStream<{ message: string; count: number; failCode: number }, EchoReply>,
    ) {
      calls.push(seen('ServerStream', call));
      const { message, count, failCode } = call.request;
      let i = 0;
      const writeMore = (): void => {
        while (i < count) {
          const ok = call.write({ message, servedBy: who, index: i });
          i++;
          if (!ok) {
            call.once('drain', writeMore);
            return;
          }
        }
        if (failCode !== 0) call.emit('error', { code: failCode, details: `failed with ${failCode}` });
        else call.end(trailers(who, call.metadata));
      };
      writeMore();
    },
    ClientStream(
      call: grpc.ServerReadableStream<EchoRequest, EchoReply>,
      callback: grpc.sendUnaryData<EchoReply>,
    ) {
      calls.push(seen('ClientStream', call));
      const parts: string[] = [];
      call.on('data', (r: EchoRequest) => parts.push(r.message ?? ''));
      call.on('end', () =>
        callback(
          null,
          { message: parts.join(','), servedBy: who, index: parts.length },
          trailers(who, call.metadata),
        ),
      );
    },
    Bidi(call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) {
      calls.push(seen('Bidi', call));
      let i = 0;
      call.on('data', (r: EchoRequest) =>
        call.write({ message: r.message ?? '', servedBy: who, index: i++ }),
      );
      call.on('end', () => call.end(trailers(who, call.metadata)));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    ),
  );
  if (name === undefined) who = String(port);
  return {
    port,
    endpoint: `127.0.0.1:${port}`,
    name: who,
    calls,
    shutdown: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    close: () => server.forceShutdown(),
  };
}

/**
 * An Echo client on `target` (`127.0.0.1:PORT`), plaintext, with `:authority` set to `authority`
 * (how an app names the upstream to meshlet's outbound listener). No proxy from the environment.
 */
export function echoClient(target: string, authority?: string): EchoStub {
  const options: grpc.ChannelOptions = { 'grpc.enable_http_proxy': 0 };
  if (authority !== undefined) options['grpc.default_authority'] = authority;
  return new EchoClient(target, grpc.credentials.createInsecure(), options);
}

/** The outcome of a unary call: the reply or the error, and the trailing metadata. */
export interface UnaryResult {
  reply?: EchoReply;
  error?: grpc.ServiceError;
  trailers?: grpc.Metadata;
}

/** Calls Echo/Unary and resolves with reply or error and the trailing metadata (never rejects). */
export function unary(
  client: EchoStub,
  request: EchoRequest,
  options: { metadata?: grpc.Metadata; deadlineMs?: number } = {},
): Promise<UnaryResult> {
  return new Promise((resolve) => {
    const result: UnaryResult = {};
    const callOptions: grpc.CallOptions = {};
    if (options.deadlineMs !== undefined) callOptions.deadline = Date.now() + options.deadlineMs;
    const call = client.Unary(
      request,
      options.metadata ?? new grpc.Metadata(),
      callOptions,
      (error: grpc.ServiceError | null, reply: EchoReply) => {
        if (error !== null) result.error = error;
        else result.reply = reply;
      },
    ) as grpc.ClientUnaryCall;
    call.on('status', (status: grpc.StatusObject) => {
      result.trailers = status.metadata;
      // The callback runs before 'status'; resolve on the next tick so both are set.
      setImmediate(() => resolve(result));
    });
  });
}

export { grpc };
