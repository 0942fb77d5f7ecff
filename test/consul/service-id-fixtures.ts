// The shared setup of the service ID tests: a Consul double, an app, meshlets registering `web`, and readers of the catalog, the registrations and the logs.
import { hostname } from 'node:os';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { consulRegistry } from './consul-helpers.ts';

/**
 * The options of a service ID `describe` with its own fixture (its own Consul double, etcd or Redis
 * server, app and default ID): it runs side by side with the file's other such `describe`s, and so
 * do its tests unless they are {@link ONE_AT_A_TIME} (the etcd and Redis fixture gives each test its
 * own keys; the Consul one shares one double between the tests of a `describe`).
 */
export const SIDE_BY_SIDE = { concurrent: true } as const;

/**
 * The options of a test of a {@link SIDE_BY_SIDE} `describe` that must not overlap its other tests
 * (they share the Consul fixture's double and default ID).
 */
export const ONE_AT_A_TIME = { concurrent: false } as const;

/** The collision counter's line for IDs meshlet registered under a distinct ID. */
export const RENAMED = 'meshlet_registry_consul_service_id_collisions_total{outcome="renamed"}';
/** The collision counter's line for a `registry.serviceId` meshlet did not register (held by another instance). */
export const REFUSED = 'meshlet_registry_consul_service_id_collisions_total{outcome="refused"}';

/** What {@link serviceIdFixture} gives a `describe`; `double`, `app` and `defaultId` are set from `beforeAll` on. */
export interface ServiceIdFixture {
  readonly double: ConsulDouble;
  readonly app: TestUpstream;
  /** The default ID: `web-<hostname>-<app port>`, the same for every meshlet here. */
  readonly defaultId: string;
  /** The meshlets this `describe` started and has not stopped (closed after each test). */
  readonly started: InProcessMeshlet[];
  /** A meshlet registering `web` (the same name, hostname and port as every other) with `address`. */
  web(address: string, registry?: Record<string, unknown>): Promise<InProcessMeshlet>;
  /** A meshlet with an mTLS inbound listener (certificates from the double's Connect CA), so its sidecar proxy is registered on ports `from` to `from + 9`. */
  withSidecar(address: string, from: number): Promise<InProcessMeshlet>;
  /** Stops a meshlet this `describe` started (and forgets it). */
  stop(m: InProcessMeshlet): Promise<void>;
  /** The `web` instances the catalog holds, as `id@address`, sorted. */
  catalog(): string[];
  /** Whether meshlet's check (`service:<id>`) of `id` is passing. */
  passing(id: string): boolean;
  /** The IDs of every registration the double received with this Address. */
  registeredIds(address: string): string[];
  /** The log lines of `m` at `level`. */
  logsAt(m: InProcessMeshlet, level: string): Record<string, unknown>[];
  /** Registers a service on the agent directly, as another process (or an earlier run) would; the agent must answer 200. */
  registerByHand(definition: Record<string, unknown>, replaceChecks?: boolean): Promise<void>;
  /** Another live instance (127.0.0.9) registers over the default ID, its own TTL check (1 h) replacing meshlet's. */
  anotherInstanceTakesDefaultId(): Promise<void>;
}

/**
 * Starts the double and the app before all tests of the calling `describe`, closes its meshlets and
 * restarts the double (forgetting its requests) after each, stops both after all.
 * @param check `registry.check` of every meshlet (`interval`, `timeout`, `ttl`, ms).
 */
export function serviceIdFixture(check: Record<string, unknown>): ServiceIdFixture {
  let double!: ConsulDouble;
  let app!: TestUpstream;
  let defaultId = '';
  const started: InProcessMeshlet[] = [];

  beforeAll(async () => {
    double = new ConsulDouble();
    await double.start();
    app = await startUpstream();
    defaultId = `web-${hostname()}-${app.port}`;
  });
  afterEach(async () => {
    for (const m of started.splice(0)) await m.close();
    double.restart();
    double.clearRequests();
  });
  afterAll(async () => {
    await double?.stop();
    await app?.close();
  });

  async function registerByHand(definition: Record<string, unknown>, replaceChecks = false): Promise<void> {
    const q = replaceChecks ? '?replace-existing-checks=true' : '';
    const res = await request(`${double.url}/v1/agent/service/register${q}`, {
      method: 'PUT',
      body: JSON.stringify(definition),
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
  }
  const track = (m: InProcessMeshlet): InProcessMeshlet => (started.push(m), m);

  return {
    get double() {
      return double;
    },
    get app() {
      return app;
    },
    get defaultId() {
      return defaultId;
    },
    started,
    async web(address, registry = {}) {
      return track(
        await startMeshlet({
          service: { name: 'web', port: app.port, address },
          registry: consulRegistry(double, { check, ...registry }),
          shutdown: { drainDelay: 0 },
          accessLog: { enabled: false },
        }),
      );
    },
    async withSidecar(address, from) {
      return track(
        await startMeshlet({
          service: { name: 'web', port: app.port, address },
          listeners: { inbound: { address: '127.0.0.1', port: 0 } },
          registry: consulRegistry(double, {
            check,
            sidecarProxy: { upstreamPorts: { from, to: from + 9 }, debounce: '100ms' },
          }),
          tls: { source: 'consul' },
          shutdown: { drainDelay: 0 },
          accessLog: { enabled: false },
        } as never),
      );
    },
    async stop(m) {
      started.splice(started.indexOf(m), 1);
      await m.close();
    },
    catalog() {
      return double
        .instances('web')
        .map((s) => `${s.id}@${s.address}`)
        .sort();
    },
    passing(id) {
      return double.checks(id).some((c) => c.checkId === `service:${id}` && c.status === 'passing');
    },
    registeredIds(address) {
      return double.requests
        .filter((r) => r.path === '/v1/agent/service/register')
        .map((r) => JSON.parse(r.body) as { ID: string; Address: string })
        .filter((d) => d.Address === address)
        .map((d) => d.ID);
    },
    logsAt(m, level) {
      return m.logs.filter((l) => l.level === level);
    },
    registerByHand,
    async anotherInstanceTakesDefaultId() {
      await registerByHand(
        {
          ID: defaultId,
          Name: 'web',
          Address: '127.0.0.9',
          Port: app.port,
          Check: { CheckID: 'other-ttl', Name: 'other', TTL: '1h', Status: 'passing' },
        },
        true,
      );
    },
  };
}
