// `GET /`: the admin listener's index — every endpoint, what it does, and where the gRPC admin API listens.

/** One admin endpoint as the index lists it. */
export interface AdminEndpoint {
  method: string;
  path: string;
  /** Whether the call mutates state (then the admin-token rule applies). */
  mutating: boolean;
  description: string;
}

/** Every admin HTTP endpoint. */
export const ADMIN_ENDPOINTS: readonly AdminEndpoint[] = [
  { method: 'GET', path: '/', mutating: false, description: 'this index' },
  { method: 'GET', path: '/live', mutating: false, description: 'the process is up (200)' },
  {
    method: 'GET',
    path: '/ready',
    mutating: false,
    description:
      'ready to serve: registry synced, not draining, local app healthy (200, else 503 with the failing checks); ?ignore=app leaves the app check out',
  },
  { method: 'GET', path: '/metrics', mutating: false, description: 'Prometheus metrics' },
  {
    method: 'GET',
    path: '/upstreams',
    mutating: false,
    description: 'upstreams, endpoints, ejections, breaker states',
  },
  {
    method: 'POST',
    path: '/upstreams/{name}/breaker/reset',
    mutating: true,
    description: "close an upstream's circuit breaker",
  },
  {
    method: 'POST',
    path: '/drain',
    mutating: true,
    description:
      '/ready 503 and the instance critical in Consul while requests keep being served; idempotent',
  },
  { method: 'DELETE', path: '/drain', mutating: true, description: 'undo POST /drain' },
  {
    method: 'GET',
    path: '/config',
    mutating: false,
    description: "the running config (secrets redacted), its file and the last reload's result",
  },
];

/** The `GET /` document. */
export function adminIndex(version: string, adminGrpc: string | null): Record<string, unknown> {
  return {
    meshlet: version,
    endpoints: ADMIN_ENDPOINTS,
    grpc:
      adminGrpc === null
        ? null
        : {
            address: adminGrpc,
            services: [
              'meshlet.admin.v1.Admin',
              'grpc.health.v1.Health',
              'grpc.reflection.v1.ServerReflection',
            ],
            proto: 'protos/meshlet/admin/v1/admin.proto',
          },
  };
}
