// The shared setup of the etcd and Redis service ID tests: a backend, an app, meshlets registering `web`, and readers of the keys, the logs and /upstreams.
import { AsyncLocalStorage } from 'node:async_hooks';
import { hostname } from 'node:os';
import { afterAll, aroundEach, beforeAll } from 'vitest';
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
  /** The running test's keys: the backend under the test's own registry prefix ({@link Kv.under}). */
  readonly kv: Kv;
  readonly app: TestUpstream;
  /** The default ID: `web-<hostname>-<app port>`, the same for every meshlet here. */
  readonly defaultId: string;
  /** Takes a meshlet the running test started itself, to close it after the test. */
  readonly started: { push(m: InProcessMeshlet): void };
  /** The collision counter's line for IDs meshlet wrote under a distinct key. */
  readonly RENAMED: string;
  /** The collision counter's line for a `registry.serviceId` meshlet did not write (held by another instance). */
  readonly REFUSED: string;
  /** A meshlet registering `web` (the same name, hostname and port as every other) with `address`; `drainDelay` in ms (default 0). */
  web(address: string, registry?: Record<string, unknown>, drainDelay?: number): Promise<InProcessMeshlet>;
  /** Stops a meshlet the running test started (and forgets it). */
  stop(m: InProcessMeshlet): Promise<void>;
  /** `id@address status` of every `web` key of the running test, sorted. */
  keys(): Promise<string[]>;
  /** The log lines of `m` at `level`. */
  logsAt(m: InProcessMeshlet, level: string): Record<string, unknown>[];
  /** The registration state `m` shows on /upstreams. */
  registration(m: InProcessMeshlet): Promise<Registration>;
}

/** What one running test owns: its keys (its own registry prefix) and the meshlets it started. */
interface TestScope {
  kv: Kv;
  started: InProcessMeshlet[];
}

/** The scope of the test running in this async context (set around each test). */
const scopes = new AsyncLocalStorage<TestScope>();

/** Tells apart the registry prefixes of every test of this file. */
let tests = 0;

/** The running test's scope; throws outside a test (in a hook of the `describe`, say). */
function scope(): TestScope {
  const s = scopes.getStore();
  if (s === undefined) throw new Error('kvServiceIdFixture: used outside a test');
  return s;
}

/**
 * Starts the `type` backend (`make`) and the app before all tests of the calling `describe` (30 s
 * allowed), stops both after all. Each test gets its own registry prefix on that backend (its
 * `kv`, `keys` and meshlets see only its keys), so tests may run concurrently; its meshlets are
 * closed and its keys cleared after it.
 * @param check `registry.check` of every meshlet (`interval`, `timeout`, ms).
 * @param ttlMs the lease / key TTL of every meshlet, ms (default: the backend's, `KV_TTL`).
 */
export function kvServiceIdFixture(
  type: Kv['type'],
  make: () => Promise<Kv>,
  check: Record<string, unknown>,
  ttlMs?: number,
): KvServiceIdFixture {
  let backend!: Kv;
  let app!: TestUpstream;
  let defaultId = '';

  beforeAll(async () => {
    backend = await make();
    app = await startUpstream();
    defaultId = `web-${hostname()}-${app.port}`;
  }, 30_000);
  aroundEach(async (runTest) => {
    const n = ++tests;
    const s: TestScope = {
      kv: backend.under(type === 'etcd' ? `/meshlet/test-${n}/` : `meshlet:test-${n}:`),
      started: [],
    };
    await scopes.run(s, async () => {
      try {
        await runTest();
      } finally {
        for (const m of s.started.splice(0)) await m.close();
        await s.kv.clear();
      }
    });
  });
  afterAll(async () => {
    await app?.close();
    await backend?.close();
  });

  /** The running test's `kv`, as one object the `describe` can hold from `beforeAll` on. */
  const kv: Kv = {
    type,
    registry: (extra, ttl) => scope().kv.registry(extra, ttl),
    web: () => scope().kv.web(),
    put: (id, record, ttl) => scope().kv.put(id, record, ttl),
    clear: () => scope().kv.clear(),
    under: (root) => scope().kv.under(root),
    close: async () => undefined,
  };

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
    started: { push: (m) => scope().started.push(m) },
    RENAMED: `meshlet_registry_${type}_service_id_collisions_total{outcome="renamed"}`,
    REFUSED: `meshlet_registry_${type}_service_id_collisions_total{outcome="refused"}`,
    async web(address, registry = {}, drainDelay = 0) {
      const { started } = scope();
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
      const { started } = scope();
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
