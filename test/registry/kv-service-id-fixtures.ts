// The shared setup of the etcd and Redis service ID tests: a backend, an app, meshlets registering `web`, and readers of the keys, the logs and /upstreams.
import { hostname } from 'node:os';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { adminGet } from '../consul/consul-helpers.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import type { Kv } from './kv-backends.ts';

/** The registration state a meshlet shows on /upstreams. */
export type Registration = {
  serviceId: string;
  key: string;
  registered: boolean;
  refusedBecause: string | null;
};

/** What {@link kvServiceIdFixture} gives a `describe`; `kv`, `app` and `defaultId` are set from `beforeAll` on. */
export interface KvServiceIdFixture {
  readonly kv: Kv;
  readonly app: TestUpstream;
  /** The default ID: `web-<hostname>-<app port>`, the same for every meshlet here. */
  readonly defaultId: string;
  /** The meshlets this `describe` started and has not stopped (closed after each test). */
  readonly started: InProcessMeshlet[];
  /** The collision counter's line for IDs meshlet wrote under a distinct key. */
  readonly RENAMED: string;
  /** The collision counter's line for a `registry.serviceId` meshlet did not write (held by another instance). */
  readonly REFUSED: string;
  /** A meshlet registering `web` (the same name, hostname and port as every other) with `address`; `drainDelay` in ms (default 0). */
  web(address: string, registry?: Record<string, unknown>, drainDelay?: number): Promise<InProcessMeshlet>;
  /** Stops a meshlet this `describe` started (and forgets it). */
  stop(m: InProcessMeshlet): Promise<void>;
  /** `id@address status` of every `web` key, sorted. */
  keys(): Promise<string[]>;
  /** The log lines of `m` at `level`. */
  logsAt(m: InProcessMeshlet, level: string): Record<string, unknown>[];
  /** The registration state `m` shows on /upstreams. */
  registration(m: InProcessMeshlet): Promise<Registration>;
}

/**
 * Starts the `type` backend (`make`) and the app before all tests of the calling `describe` (30 s allowed),
 * closes its meshlets and clears the keys after each, stops both after all.
 * @param check `registry.check` of every meshlet (`interval`, `timeout`, ms).
 * @param ttlMs the lease / key TTL of every meshlet, ms (default: the backend's, `KV_TTL`).
 */
export function kvServiceIdFixture(
  type: Kv['type'],
  make: () => Promise<Kv>,
  check: Record<string, unknown>,
  ttlMs?: number,
): KvServiceIdFixture {
  let kv!: Kv;
  let app!: TestUpstream;
  let defaultId = '';
  const started: InProcessMeshlet[] = [];

  beforeAll(async () => {
    kv = await make();
    app = await startUpstream();
    defaultId = `web-${hostname()}-${app.port}`;
  }, 30_000);
  afterEach(async () => {
    for (const m of started.splice(0)) await m.close();
    await kv.clear();
  });
  afterAll(async () => {
    await app?.close();
    await kv?.close();
  });

  return {
    get kv() {
      return kv;
    },
    get app() {
      return app;
    },
    get defaultId() {
      return defaultId;
    },
    started,
    RENAMED: `meshlet_registry_${type}_service_id_collisions_total{outcome="renamed"}`,
    REFUSED: `meshlet_registry_${type}_service_id_collisions_total{outcome="refused"}`,
    async web(address, registry = {}, drainDelay = 0) {
      const m = await startMeshlet({
        service: { name: 'web', port: app.port, address },
        registry: kv.registry({ check, ...registry }, ttlMs),
        shutdown: { drainDelay },
        accessLog: { enabled: false },
      });
      started.push(m);
      return m;
    },
    async stop(m) {
      started.splice(started.indexOf(m), 1);
      await m.close();
    },
    async keys() {
      return Object.entries(await kv.web())
        .map(([id, h]) => `${id}@${h.address} ${h.status}`)
        .sort();
    },
    logsAt(m, level) {
      return m.logs.filter((l) => l.level === level);
    },
    async registration(m) {
      const s = await adminGet<{ registry: { registration: Registration } }>(m.admin, '/upstreams');
      return s.body.registry.registration;
    },
  };
}
