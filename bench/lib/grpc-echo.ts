// The Echo test service (protos/meshlet/test/v1/echo.proto) as the gRPC phase uses it: the generated
// grpc-js client class, the request every call sends, and the bytes h2load posts (one gRPC frame).
// Bench code does not import from test/, so this is the bench's own minimal copy of the loading.
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
/** An Echo client: grpc-js's Client with the service's methods. */
export type EchoStub = grpc.Client & { Unary: Method; Bidi: Method };

type EchoClientCtor = (new (
  target: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => EchoStub) & { service: grpc.ServiceDefinition };

const definition = loadSync(PROTO, { keepCase: false, longs: Number, defaults: true });
const pkg = grpc.loadPackageDefinition(definition) as unknown as {
  meshlet: { test: { v1: { Echo: EchoClientCtor } } };
};
/** The generated Echo client class; `.service` is the service definition a server adds. */
export const EchoClient = pkg.meshlet.test.v1.Echo;

/** The path h2load posts to. */
export const UNARY_PATH = '/meshlet.test.v1.Echo/Unary';
/** `servedBy` of every reply of the bench upstream, so every reply has the same size. */
export const SERVED_BY = 'bench';
/** The request of every call: a 100-byte message (the HTTP phase's body size), echoed back. */
export const REQUEST: EchoRequest = { message: `${'meshlet-bench '.repeat(7)}xx` };

/** One length-prefixed gRPC message: flag 0 (uncompressed), uint32 big-endian length, the bytes. */
export function grpcFrame(message: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

const unaryDef = EchoClient.service.Unary!;
/** The request body h2load sends: one gRPC frame holding the protobuf bytes of {@link REQUEST}. */
export function requestFrame(): Buffer {
  return grpcFrame(unaryDef.requestSerialize(REQUEST));
}
/** Bytes of DATA in one successful reply (its one gRPC frame): h2load's data bytes ÷ this = replies. */
export function replyFrameBytes(): number {
  const reply: EchoReply = { message: REQUEST.message!, servedBy: SERVED_BY, index: 0 };
  return grpcFrame(unaryDef.responseSerialize(reply)).length;
}

/** An Echo client on 127.0.0.1:port, plaintext (h2c), never through a proxy from the environment. */
export function echoClient(port: number): EchoStub {
  return new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    'grpc.enable_http_proxy': 0,
  });
}

/**
 * One unary call with a deadline; resolves with null when it returned the request's message with
 * status OK, else with the reason (never rejects).
 */
export function checkUnary(port: number, deadlineMs = 5000): Promise<string | null> {
  const client = echoClient(port);
  return new Promise<string | null>((resolve) => {
    client.Unary(
      REQUEST,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err: grpc.ServiceError | null, reply: EchoReply | undefined) => {
        client.close();
        // grpc-js appends "(timestamp). Resolution note: …" to connection errors: cut it.
        if (err !== null)
          resolve(
            `${grpc.status[err.code] ?? err.code}: ${err.details.replace(/ \(\d{4}-\d\d-\d\dT[^)]*\).*$/s, '')}`,
          );
        else if (reply?.message !== REQUEST.message) resolve('reply does not echo the request');
        else resolve(null);
      },
    );
  });
}

export { grpc };
