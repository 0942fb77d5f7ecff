// Loads meshlet's admin proto (protos/meshlet/admin/v1/admin.proto) for the gRPC admin server and the CLI's client.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';

/** The admin proto, shipped in the npm package and the image (`protos/`), beside src/ and dist/. */
export const ADMIN_PROTO = fileURLToPath(
  new URL('../../protos/meshlet/admin/v1/admin.proto', import.meta.url),
);

/** proto-loader options: camelCase fields, int64 as numbers, defaults filled. */
export const PROTO_OPTIONS: Options = { keepCase: false, longs: Number, enums: String, defaults: true };

/** The fully qualified name of the admin service. */
export const ADMIN_SERVICE = 'meshlet.admin.v1.Admin';

/** The admin proto's package definition, with `extra` proto files (absolute paths) loaded beside it. */
export function adminDefinition(extra: readonly string[] = []): PackageDefinition {
  return loadSync([ADMIN_PROTO, ...extra], PROTO_OPTIONS);
}

/** A grpc-js client constructor of the admin service. */
export type AdminClientCtor = grpc.ServiceClientConstructor;

/** The generated Admin client class (grpc-js), e.g. `new AdminClient('127.0.0.1:15002', grpc.credentials.createInsecure())`. */
export function adminClientClass(): AdminClientCtor {
  const pkg = grpc.loadPackageDefinition(adminDefinition()) as unknown as {
    meshlet: { admin: { v1: { Admin: AdminClientCtor } } };
  };
  return pkg.meshlet.admin.v1.Admin;
}
