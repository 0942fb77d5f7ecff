// Fixture of the hostile-output tests: the smuggling mesh plus a TLS gateway before the same endpoint, raw and HTTP/2 senders for each listener, and what one refusal moved.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http2';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll } from 'vitest';
import { h2Exchange, type H2Tls } from '../helpers/h2-request.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { sampleSum, scrapeMetrics } from '../helpers/metrics.ts';
import { collectReply, replyComplete } from '../helpers/raw-http.ts';
import { smugglingMesh, type SmugglingMesh } from '../hostile-smuggling/smuggling-mesh.ts';
import { makePki, tempDir } from '../tls/tls-helpers.ts';

/** A listener a client reaches: `gateway-tls` is a gateway terminating TLS itself. */
export type ListenerName = 'outbound' | 'inbound' | 'gateway' | 'gateway-tls';

/** The mesh: {@link smugglingMesh} and a TLS gateway (`users` → the same recording endpoint). */
export interface RefusalMesh {
  readonly mesh: SmugglingMesh;
  /** The meshlet whose listener `name` is (its admin, its logs). */
  meshlet(name: ListenerName): InProcessMeshlet;
  port(name: ListenerName): number;
  /** What a client needs to speak TLS to `name`, or undefined for cleartext. */
  tls(name: ListenerName): H2Tls | undefined;
}

/** Registers the `beforeAll`s that start the mesh and the TLS gateway, and the `afterAll` that stops it. */
export function refusalMesh(): RefusalMesh {
  const mesh = smugglingMesh();
  let gw: InProcessMeshlet | undefined;
  let ca: Buffer | undefined;
  const dirs: string[] = [];
  beforeAll(async () => {
    const pki = await makePki();
    const leaf = await pki.issue('gw');
    const dir = tempDir();
    dirs.push(pki.dir, dir);
    writeFileSync(join(dir, 'gw.pem'), leaf.certPem);
    writeFileSync(join(dir, 'gw.key'), leaf.keyPem);
    ca = readFileSync(pki.caFile);
    gw = await startMeshlet({
      listeners: {
        gateway: {
          address: '127.0.0.1',
          port: 0,
          tls: { cert: join(dir, 'gw.pem'), key: join(dir, 'gw.key') },
        },
      },
      registry: { type: 'static', endpoints: { users: [mesh.rec.endpoint] } },
      gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'users' }] },
    });
  }, 30_000);
  afterAll(async () => {
    await gw?.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  return {
    mesh,
    meshlet: (name) => (name === 'inbound' ? mesh.b : name === 'gateway-tls' ? gw! : mesh.a),
    port: (name) =>
      ({
        outbound: mesh.outboundPort,
        inbound: mesh.inboundPort,
        gateway: mesh.gatewayPort,
        'gateway-tls': gw!.daemon.addresses().gateway!.port,
      })[name],
    tls: (name) => (name === 'inbound' ? mesh.tls : name === 'gateway-tls' ? { ca: ca! } : undefined),
  };
}

/** The authority each listener routes to the recording endpoint. */
export const authorityOf = (name: ListenerName): string => (name === 'inbound' ? 'orders' : 'users');

/** A client's answer: `STATUS x-meshlet-error`, or why there was none. */
export type Answer = string;

/** Sends `headers` (no body) over HTTP/2 to `name`; the answer, or the stream's or session's error. */
export async function overHttp2(
  m: RefusalMesh,
  name: ListenerName,
  headers: OutgoingHttpHeaders,
): Promise<Answer> {
  const origin = `${m.tls(name) === undefined ? 'http' : 'https'}://127.0.0.1:${m.port(name)}`;
  try {
    const { head } = await h2Exchange(origin, headers, m.tls(name), 3000);
    return [head[':status'], head['x-meshlet-error']].filter((s) => s !== undefined).join(' ');
  } catch (err) {
    return `no answer (${(err as Error).message})`;
  }
}

/** Writes `text` (latin1) on a fresh HTTP/1.1 connection to `name`; the answer once whole or closed (≤ 3 s). */
export async function overHttp1(m: RefusalMesh, name: ListenerName, text: string): Promise<Answer> {
  const bytes = Buffer.from(text, 'latin1');
  const tls = m.tls(name);
  let socket: Socket;
  if (tls === undefined) {
    socket = connect(m.port(name), '127.0.0.1');
    socket.write(bytes);
  } else {
    socket = tlsConnect(
      {
        port: m.port(name),
        host: '127.0.0.1',
        ...tls,
        checkServerIdentity: () => undefined,
        ALPNProtocols: ['http/1.1'],
      },
      () => socket.write(bytes),
    );
  }
  const { text: reply } = await collectReply(socket, { timeoutMs: 3000, until: replyComplete });
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(reply)?.[1];
  if (status === undefined) return `no answer (${JSON.stringify(reply.slice(0, 100))})`;
  const error = /\r\nx-meshlet-error: *([^\r]*)/i.exec(reply)?.[1];
  return [status, error].filter((s) => s !== undefined).join(' ');
}

/** The counters one refusal on a listener must move, and those that must not (against the `users` endpoint). */
function counters(text: string, name: ListenerName): Record<string, number> {
  const direction = name === 'inbound' ? 'inbound' : 'outbound';
  return {
    localReplies: sampleSum(text, 'meshlet_local_replies_total', { direction, code: 'bad_request' }),
    inboundDenied: sampleSum(text, 'meshlet_inbound_denied_total', { caller: 'web', reason: 'bad_request' }),
    gatewayUnrouted: sampleSum(text, 'meshlet_gateway_unrouted_total', { reason: 'bad_request' }),
    '5xx for users': sampleSum(text, 'meshlet_requests_total', { upstream: 'users', status_class: '5xx' }),
    'connect errors': sampleSum(text, 'meshlet_upstream_connect_errors_total', {}),
    ejections: sampleSum(text, 'meshlet_outlier_ejections_total', {}),
  };
}

/** What one refusal moved: counter deltas, the access lines written, the request lines the endpoint parsed. */
export interface Moved {
  counters: Record<string, number>;
  access: Record<string, unknown>[];
  reached: string[];
}

/** Runs `send` on `name` and reports what it moved (read 100 ms after it answered). */
export async function measure(
  m: RefusalMesh,
  name: ListenerName,
  send: () => Promise<Answer>,
): Promise<{ answer: Answer } & Moved> {
  const meshlet = m.meshlet(name);
  const before = counters(await scrapeMetrics(meshlet.admin), name);
  const logsBefore = meshlet.logs.length;
  const reachedBefore = m.mesh.rec.requests().length;
  const answer = await send();
  await new Promise((r) => setTimeout(r, 100));
  const after = counters(await scrapeMetrics(meshlet.admin), name);
  return {
    answer,
    counters: Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k]!])),
    access: meshlet.logs.slice(logsBefore).filter((l) => l.msg === 'access'),
    reached: m.mesh.rec
      .requests()
      .slice(reachedBefore)
      .map((r) => r.line),
  };
}

/** What one refusal on `name` must move: one local reply (and, inbound, one denial; gateway, one unrouted), nothing against the endpoint. */
export function oneRefusal(name: ListenerName): Record<string, number> {
  return {
    localReplies: 1,
    inboundDenied: name === 'inbound' ? 1 : 0,
    gatewayUnrouted: name.startsWith('gateway') ? 1 : 0,
    '5xx for users': 0,
    'connect errors': 0,
    ejections: 0,
  };
}
