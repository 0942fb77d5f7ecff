// grpc-js clients of meshlet's gRPC admin port for tests: Admin (from the shipped proto), Health, and reflection.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as HEALTH_PROTO } from 'grpc-health-check';
import { adminClientClass } from '../../src/admin-grpc/admin-proto.ts';

const require = createRequire(import.meta.url);
const REFLECTION_PROTO = join(
  dirname(require.resolve('@grpc/reflection/package.json')),
  'build/proto/grpc/reflection/v1/reflection.proto',
);

/** A method of a generated client (argument shapes vary by call shape). */
type Method = (...args: unknown[]) => unknown;
export type AdminStub = grpc.Client & Record<string, Method>;

const NO_PROXY = { 'grpc.enable_http_proxy': 0 };

/** An Admin client for `target` (`127.0.0.1:PORT`). */
export function adminClient(target: string): AdminStub {
  const Admin = adminClientClass();
  return new Admin(target, grpc.credentials.createInsecure(), NO_PROXY) as unknown as AdminStub;
}

/** A unary call as a promise. */
export function unary<T>(
  client: AdminStub,
  method: string,
  req: object,
  md = new grpc.Metadata(),
): Promise<T> {
  return new Promise((resolve, reject) =>
    client[method]!(req, md, (err: grpc.ServiceError | null, res: T) =>
      err === null ? resolve(res) : reject(err),
    ),
  );
}

const health = grpc.loadPackageDefinition(
  loadSync(HEALTH_PROTO, { keepCase: true, enums: String }),
) as unknown as {
  grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
};

/** A grpc.health.v1.Health client. */
export function healthClient(target: string): AdminStub {
  return new health.grpc.health.v1.Health(
    target,
    grpc.credentials.createInsecure(),
    NO_PROXY,
  ) as unknown as AdminStub;
}

const reflection = grpc.loadPackageDefinition(
  loadSync(REFLECTION_PROTO, { keepCase: true, longs: Number, defaults: true, oneofs: true }),
) as unknown as { grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } } };

/**
 * Asks the server's reflection service (grpc.reflection.v1), as grpcurl does: the services it lists,
 * and the size of the file descriptors that define `symbol` (what a client needs instead of a proto).
 */
export function reflect(
  target: string,
  symbol: string,
): Promise<{ services: string[]; descriptorBytes: number }> {
  const client = new reflection.grpc.reflection.v1.ServerReflection(
    target,
    grpc.credentials.createInsecure(),
    NO_PROXY,
  ) as unknown as AdminStub;
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo!() as grpc.ClientDuplexStream<object, Record<string, unknown>>;
    const out = { services: [] as string[], descriptorBytes: 0 };
    let answers = 0;
    call.on('data', (res) => {
      const list = res.list_services_response as { service: { name: string }[] } | undefined;
      if (list) out.services = list.service.map((s) => s.name);
      const files = res.file_descriptor_response as { file_descriptor_proto: Buffer[] } | undefined;
      if (files) out.descriptorBytes = files.file_descriptor_proto.reduce((n, b) => n + b.length, 0);
      if (++answers === 2) call.end();
    });
    call.on('end', () => {
      client.close();
      resolve(out);
    });
    call.on('error', reject);
    call.write({ list_services: '' });
    call.write({ file_containing_symbol: symbol });
  });
}
