// Fixture of the hostile-output tests: meshlet A (outbound + gateway) → mTLS → meshlet B (inbound) → app, every log line kept raw.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll } from 'vitest';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { startRawEndpoint, type RawEndpoint } from '../helpers/raw-http.ts';
import { makePki, tlsFilesConfig } from '../tls/tls-helpers.ts';

/** The HS256 secret of A's gateway JWT authenticator. */
export const JWT_SECRET = new TextEncoder().encode('hostile-output-secret-0123456789abcdef');

/** The app behind B: answers 200 `ok` to anything, with room for 256 KiB heads; keeps what it saw. */
export interface App {
  readonly port: number;
  readonly requests: Pick<IncomingMessage, 'method' | 'url' | 'headers' | 'rawHeaders'>[];
  close(): Promise<void>;
}

async function startApp(): Promise<App> {
  const requests: App['requests'] = [];
  const server = createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
    requests.push({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders });
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A daemon with every stdout line it wrote, as written (not parsed, so a broken line shows). */
export interface RawMeshlet {
  readonly daemon: Daemon;
  readonly lines: string[];
  readonly admin: string;
}

async function start(input: ConfigInput): Promise<RawMeshlet> {
  const lines: string[] = [];
  let rest = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      const parts = (rest + chunk.toString('utf8')).split('\n');
      rest = parts.pop()!;
      lines.push(...parts);
      done();
    },
  });
  const config = validateConfig({
    ...input,
    accessLog: { enabled: true, sampleRate: 1 },
    listeners: { outbound: { port: 0 }, admin: { port: 0 }, ...input.listeners },
  });
  const daemon = await Daemon.start(config, { logger: createLogger('info', sink), processMetrics: false });
  return { daemon, lines, admin: `http://127.0.0.1:${daemon.addresses().admin.port}` };
}

/** A (web: outbound, gateway with 64 KiB heads) → B (orders: inbound mTLS with 128 KiB heads) → app. */
export interface Mesh {
  readonly a: RawMeshlet;
  readonly b: RawMeshlet;
  readonly app: App;
  /** A plain endpoint of A's upstream `odd`, answering `HTTP/1.1 999`. */
  readonly odd: RawEndpoint;
  readonly outboundPort: number;
  readonly gatewayPort: number;
  readonly inboundPort: number;
  /** PEM files of a `web` client certificate, for direct calls to B's inbound listener. */
  readonly client: { ca: string; cert: string; key: string };
  close(): Promise<void>;
}

export async function startMesh(): Promise<Mesh> {
  const pki = await makePki();
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-hostile-'));
  writeFileSync(join(dir, 'jwt.secret'), new TextDecoder().decode(JWT_SECRET));
  const app = await startApp();
  const odd = await startRawEndpoint('HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n');
  const b = await start({
    service: { name: 'orders', port: app.port },
    listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'], maxHeaderSize: 128 * 1024 } },
    tls: await tlsFilesConfig(pki, 'orders'),
  });
  const inboundPort = b.daemon.addresses().inbound!.port;
  const a = await start({
    tls: await tlsFilesConfig(pki, 'web'),
    listeners: { gateway: { address: '127.0.0.1', port: 0, maxHeaderSize: 64 * 1024 } },
    registry: {
      type: 'static',
      endpoints: {
        orders: [{ address: '127.0.0.1', port: inboundPort, meta: { meshlet_inbound: 'mtls' } }],
        odd: [odd.endpoint],
      },
    },
    gateway: {
      auth: { users: { type: 'jwt', secretFile: join(dir, 'jwt.secret'), claims: { sub: 'x-user-id' } } },
      tenants: { acme: {} },
      routes: [
        { match: { pathPrefix: '/pub/' }, upstream: 'orders' },
        { match: { pathPrefix: '/me/' }, upstream: 'orders', auth: ['users'] },
      ],
    },
  });
  const leaf = await pki.write('web');
  return {
    a,
    b,
    app,
    odd,
    outboundPort: a.daemon.addresses().outbound.port,
    gatewayPort: a.daemon.addresses().gateway!.port,
    inboundPort,
    client: { ca: pki.caFile, cert: leaf.cert, key: leaf.key },
    async close() {
      await a.daemon.shutdown('test');
      await b.daemon.shutdown('test');
      await app.close();
      await odd.close();
      rmSync(dir, { recursive: true, force: true });
      rmSync(pki.dir, { recursive: true, force: true });
    },
  };
}

/**
 * Registers, in the calling file (or `describe`), a `beforeAll` that starts the mesh (≤ 30 s) and an
 * `afterAll` that closes it. Returns the mesh as its tests read it: a view that reads through to the
 * started one (reading it before the `beforeAll` ran throws).
 */
export function meshForSuite(): Mesh {
  let mesh: Mesh | undefined;
  beforeAll(async () => {
    mesh = await startMesh();
  }, 30_000);
  afterAll(async () => {
    await mesh?.close();
  });
  return new Proxy({} as Mesh, {
    get(_target, key) {
      if (mesh === undefined)
        throw new Error(`mesh.${String(key)} read before the suite's beforeAll started it`);
      return Reflect.get(mesh, key) as unknown;
    },
  });
}

/** Access lines (raw) of a meshlet whose text contains `mark`, waiting up to 2 s for `count` of them. */
export async function accessLines(m: RawMeshlet, mark: string, count = 1): Promise<string[]> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const found = m.lines.filter((l) => l.includes('"msg":"access"') && l.includes(mark));
    if (found.length >= count) return found;
    if (Date.now() > deadline)
      throw new Error(`${found.length} of ${count} access lines with ${mark} within 2 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
