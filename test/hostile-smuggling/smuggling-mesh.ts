// Fixture of the smuggling tests: one recording endpoint behind all three listeners a client reaches (outbound, gateway, mTLS inbound), and raw senders for each.
import { readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll } from 'vitest';
import { startMeshlet, type InProcessMeshlet } from '../helpers/meshlet.ts';
import { collectReply, replyComplete } from '../helpers/raw-http.ts';
import { makePki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { startRecordingEndpoint, type RecordingEndpoint, type SeenRequest } from './recording-endpoint.ts';

/** Client certificate and CA (PEM contents) of the `web` identity the inbound listener allows. */
export interface ClientTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** The started fixture. */
export interface SmugglingMesh {
  /** The endpoint of upstream `users` (meshlet A) and the local app of meshlet B (`orders`). */
  readonly rec: RecordingEndpoint;
  /** Outbound and gateway listeners (the gateway routes every path to `users`). */
  readonly a: InProcessMeshlet;
  /** The mTLS inbound listener, allowing `web`. */
  readonly b: InProcessMeshlet;
  readonly tls: ClientTls;
  readonly outboundPort: number;
  readonly gatewayPort: number;
  readonly inboundPort: number;
}

/** One listener as a raw HTTP/1.1 client sees it: its port, how to connect, and the authority it routes. */
export interface Listener {
  readonly name: 'outbound' | 'gateway' | 'inbound';
  /** The Host that reaches the recording endpoint there (`users`, or `orders` on the inbound). */
  readonly host: string;
  /** Opens a connection (TLS with the `web` certificate on the inbound) and writes `text` (latin1) once connected. */
  open(text: string): Socket;
}

/**
 * Registers a `beforeAll` that starts the recording endpoint, meshlet B (inbound mTLS in front of
 * it as the local app) and meshlet A (outbound and gateway with `users` → it), and an `afterAll`
 * that stops them. Returns a view that reads through to the started fixture.
 */
export function smugglingMesh(): SmugglingMesh {
  let started: SmugglingMesh | undefined;
  let pkiDir: string | undefined;
  beforeAll(async () => {
    const rec = await startRecordingEndpoint();
    const pki = await makePki();
    pkiDir = pki.dir;
    const b = await startMeshlet({
      service: { name: 'orders', port: rec.port },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
    const a = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { type: 'static', endpoints: { users: [rec.endpoint] } },
      gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'users' }] },
    });
    const leaf = await pki.write('web');
    started = {
      rec,
      a,
      b,
      tls: { ca: readFileSync(pki.caFile), cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) },
      outboundPort: a.daemon.addresses().outbound.port,
      gatewayPort: a.daemon.addresses().gateway!.port,
      inboundPort: b.daemon.addresses().inbound!.port,
    };
  }, 30_000);
  afterAll(async () => {
    await started?.a.close();
    await started?.b.close();
    await started?.rec.close();
    if (pkiDir !== undefined) rmSync(pkiDir, { recursive: true, force: true });
  });
  const get = (): SmugglingMesh => {
    if (started === undefined) throw new Error('the smuggling mesh was read before its beforeAll started it');
    return started;
  };
  return {
    get rec() {
      return get().rec;
    },
    get a() {
      return get().a;
    },
    get b() {
      return get().b;
    },
    get tls() {
      return get().tls;
    },
    get outboundPort() {
      return get().outboundPort;
    },
    get gatewayPort() {
      return get().gatewayPort;
    },
    get inboundPort() {
      return get().inboundPort;
    },
  };
}

/** The three listeners of `mesh` as raw HTTP/1.1 clients reach them. */
export function listeners(mesh: SmugglingMesh): Listener[] {
  const plain =
    (port: () => number) =>
    (text: string): Socket => {
      const socket = connect(port(), '127.0.0.1');
      socket.write(Buffer.from(text, 'latin1'));
      return socket;
    };
  return [
    { name: 'outbound', host: 'users', open: plain(() => mesh.outboundPort) },
    { name: 'gateway', host: 'users', open: plain(() => mesh.gatewayPort) },
    {
      name: 'inbound',
      host: 'orders',
      open(text) {
        const socket = tlsConnect(
          {
            port: mesh.inboundPort,
            host: '127.0.0.1',
            ...mesh.tls,
            checkServerIdentity: () => undefined,
            ALPNProtocols: ['http/1.1'],
          },
          () => socket.write(Buffer.from(text, 'latin1')),
        );
        return socket;
      },
    },
  ];
}

/** Final (non-1xx) status codes in a raw reply, in order. */
export function finalStatuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1])).filter((s) => s >= 200);
}

/** What one raw exchange on a listener came to: the client's reply and what the endpoint was sent meanwhile. */
export interface Outcome {
  /** Final statuses the client read. */
  statuses: number[];
  /** The reply text (latin1). */
  reply: string;
  /** Requests the endpoint parsed meanwhile. */
  reached: SeenRequest[];
  /** Why the endpoint could not parse what it was sent meanwhile, for each connection it could not (none: empty). */
  malformed: string[];
}

/**
 * Writes `text` on a fresh connection to `listener` and reads until `replies` final answers came
 * whole, or the listener closed (≤ 3 s); then, 100 ms later, reports what reached the endpoint.
 */
export async function exchange(
  mesh: SmugglingMesh,
  listener: Listener,
  text: string,
  replies = 1,
): Promise<Outcome> {
  const before = mesh.rec.requests().length;
  const badBefore = new Set(mesh.rec.malformed());
  const socket = listener.open(text);
  const until = (t: string): boolean =>
    finalStatuses(t).length >= replies && replyComplete(t.slice(t.lastIndexOf('HTTP/1.')));
  const reply = await collectReply(socket, { timeoutMs: 3000, until });
  await new Promise((r) => setTimeout(r, 100));
  return {
    statuses: finalStatuses(reply.text),
    reply: reply.text,
    reached: mesh.rec.requests().slice(before),
    malformed: mesh.rec
      .malformed()
      .filter((c) => !badBefore.has(c))
      .map((c) => c.malformed!),
  };
}
