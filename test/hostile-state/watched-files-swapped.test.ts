// Every file meshlet watches (endpoints file, tls files, gateway certificate, API keys) is picked up promptly however it is replaced: a Kubernetes volume's `..data` swap too.
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { hashApiKey } from '../../src/gateway/api-key-authenticator.ts';
import { createDevCa, type DevCa, type IssuedLeaf, issueLeaf } from '../../src/tls/dev-ca.ts';
import { within } from '../consul/consul-helpers.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { fileSet, type FileSet, WRITE_STYLES } from './file-writers.ts';

/** A change must be in use within this long: well under the 10 s poll that backs the watch, ms. */
const PICKUP_MS = 2000;
/** Versions of each watched file a test may write (0 is the one meshlet starts on). */
const VERSIONS = 8;
const TRUST_DOMAIN = 'mesh.test';

let ca: DevCa;
/** Leaves of the `orders` inbound listener, one per version. */
let orders: IssuedLeaf[];
/** Gateway certificates, one per version: CN `gw-<version>`. */
let gateways: IssuedLeaf[];
/** The client certificate the inbound probe presents. */
let web: IssuedLeaf;
let app: TestUpstream;

beforeAll(async () => {
  ca = await createDevCa({ trustDomain: TRUST_DOMAIN });
  const issue = (service: string) => issueLeaf({ ca, service, trustDomain: TRUST_DOMAIN });
  const versions = [...Array(VERSIONS).keys()];
  orders = await Promise.all(versions.map(() => issue('orders')));
  gateways = await Promise.all(versions.map((v) => issue(`gw-${v}`)));
  web = await issue('web');
  app = await startUpstream();
});
afterAll(async () => {
  await app?.close();
});

/** Handshakes with a TLS listener on 127.0.0.1:`port`; resolves with the server certificate's serial and CN. */
function handshake(port: number, client?: IssuedLeaf): Promise<{ serial: string; cn: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      {
        host: '127.0.0.1',
        port,
        ca: ca.certPem,
        cert: client?.certPem,
        key: client?.keyPem,
        servername: 'localhost',
        checkServerIdentity: () => undefined,
        ALPNProtocols: ['http/1.1'],
      },
      () => {
        const peer = socket.getPeerCertificate();
        resolve({ serial: peer.serialNumber, cn: String(peer.subject.CN) });
        socket.destroy();
      },
    );
    socket.setTimeout(5000, () => socket.destroy(new Error('handshake timed out')));
    socket.on('error', reject);
  });
}

/** A meshlet running on version 0 of a watched file set. */
interface Running {
  readonly mesh: InProcessMeshlet;
  /** Writes version `v` of the files. */
  write(v: number): void;
  /** Whether meshlet uses version `v` now. */
  uses(v: number): Promise<boolean>;
}

/** A file meshlet watches: its files per version, and a meshlet started on them. */
interface Watched {
  readonly name: string;
  files(v: number): Record<string, string>;
  start(set: FileSet): Promise<InProcessMeshlet>;
  uses(mesh: InProcessMeshlet, v: number): Promise<boolean>;
}

const WATCHED: Watched[] = [
  {
    name: 'registry.file (the endpoints file)',
    files: (v) => ({ 'endpoints.yaml': `users: ["127.0.0.1:${20_000 + v}"]\n` }),
    start: (set) =>
      startMeshlet({
        registry: { type: 'static', file: set.path('endpoints.yaml') },
        accessLog: { enabled: false },
        shutdown: { drainDelay: 0 },
      }),
    uses: async (mesh, v) => mesh.daemon.table.get('users')?.endpoints[0]?.endpoint.port === 20_000 + v,
  },
  {
    name: 'tls.cert, tls.key and tls.ca (the inbound mTLS identity)',
    files: (v) => ({ 'tls.crt': orders[v]!.certPem, 'tls.key': orders[v]!.keyPem, 'ca.crt': ca.certPem }),
    start: (set) =>
      startMeshlet({
        service: { name: 'orders', port: app.port },
        listeners: { inbound: { address: '127.0.0.1', port: 0 }, adminGrpc: { enabled: false } },
        registry: { endpoints: {} },
        tls: {
          source: 'files',
          cert: set.path('tls.crt'),
          key: set.path('tls.key'),
          ca: set.path('ca.crt'),
          trustDomain: TRUST_DOMAIN,
        },
        accessLog: { enabled: false },
        shutdown: { drainDelay: 0 },
      }),
    uses: async (mesh, v) =>
      (await handshake(mesh.daemon.addresses().inbound!.port, web)).serial === orders[v]!.serialNumber,
  },
  {
    name: 'listeners.gateway.tls (the gateway certificate)',
    files: (v) => ({ 'tls.crt': gateways[v]!.certPem, 'tls.key': gateways[v]!.keyPem }),
    start: (set) =>
      startMeshlet({
        listeners: {
          gateway: {
            address: '127.0.0.1',
            port: 0,
            tls: { cert: set.path('tls.crt'), key: set.path('tls.key') },
          },
          adminGrpc: { enabled: false },
        },
        registry: { endpoints: { web: [app.endpoint] } },
        gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'web' }] },
        accessLog: { enabled: false },
        shutdown: { drainDelay: 0 },
      }),
    uses: async (mesh, v) => (await handshake(mesh.daemon.addresses().gateway!.port)).cn === `gw-${v}`,
  },
  {
    name: 'an apiKey authenticator file (the gateway API keys)',
    files: (v) => ({
      'api-keys.yaml': stringify({ keys: [{ name: `app-${v}`, sha256: hashApiKey(`key-${v}`) }] }),
    }),
    start: (set) =>
      startMeshlet({
        listeners: { gateway: { address: '127.0.0.1', port: 0 }, adminGrpc: { enabled: false } },
        registry: { endpoints: { web: [app.endpoint] } },
        gateway: {
          auth: { keys: { type: 'apiKey', file: set.path('api-keys.yaml') } },
          routes: [{ match: { pathPrefix: '/' }, upstream: 'web', auth: ['keys'] }],
        },
        accessLog: { enabled: false },
        shutdown: { drainDelay: 0 },
      }),
    uses: async (mesh, v) => {
      const res = await fetch(`http://127.0.0.1:${mesh.daemon.addresses().gateway!.port}/x`, {
        headers: { 'x-api-key': `key-${v}` },
      });
      await res.arrayBuffer();
      return res.status === 200;
    },
  },
];

/** Writes version 0 into `set` and starts meshlet on it. */
async function run(watched: Watched, set: FileSet): Promise<Running> {
  set.write(watched.files(0));
  const mesh = await watched.start(set);
  expect(await watched.uses(mesh, 0)).toBe(true);
  return { mesh, write: (v) => set.write(watched.files(v)), uses: (v) => watched.uses(mesh, v) };
}

describe.each(WATCHED)('$name', (watched) => {
  it.each(WRITE_STYLES)(
    `replaced by %s: in use within ${PICKUP_MS} ms, and again on a second replacement`,
    { timeout: 20_000 },
    async (style) => {
      const set = fileSet(style);
      const running = await run(watched, set);
      try {
        for (const v of [1, 2]) {
          running.write(v);
          await within(PICKUP_MS, () => running.uses(v), `version ${v} written by ${style}`);
        }
      } finally {
        await running.mesh.close();
        set.remove();
      }
    },
  );

  it(
    'a burst of Kubernetes swaps, some landing while the previous one is being reloaded: the last one is in use',
    { timeout: 20_000 },
    async () => {
      const set = fileSet('kubernetes swap');
      const running = await run(watched, set);
      try {
        // Gaps across the debounce (50 or 100 ms) and the reload itself, so swaps land before, during and after each.
        const gaps = [0, 5, 30, 55, 80, 110, 160];
        for (let v = 1; v < VERSIONS; v++) {
          running.write(v);
          await new Promise((r) => setTimeout(r, gaps[v - 1]));
        }
        const last = VERSIONS - 1;
        await within(PICKUP_MS, () => running.uses(last), `version ${last}, the last swap`);
        // And it stays: nothing older is applied late.
        await new Promise((r) => setTimeout(r, 300));
        expect(await running.uses(last)).toBe(true);
      } finally {
        await running.mesh.close();
        set.remove();
      }
    },
  );
});
