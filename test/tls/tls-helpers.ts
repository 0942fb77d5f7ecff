// Test PKI and in-process assemblies for mTLS tests: CAs and leaves on disk, inbound listener, outbound proxy.
import { AccessLog } from '../../src/telemetry/access-log.ts';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { Pool } from 'undici';
import { type HttpListener, listenHttp } from '../../src/listener/http-listener.ts';
import { listenInbound } from '../../src/listener/inbound-listener.ts';
import { inboundHandler, type InboundContext } from '../../src/proxy/inbound-stack.ts';
import { outboundHandler } from '../../src/proxy/outbound-stack.ts';
import type { ProxyContext } from '../../src/proxy/proxy-context.ts';
import { KeyedTokenBuckets } from '../../src/resilience/token-bucket.ts';
import { Router } from '../../src/route/router.ts';
import { upstreamSpec } from '../../src/config/schema.ts';
import { createLogger, type Logger } from '../../src/telemetry/logger.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { TlsMetrics } from '../../src/telemetry/tls-metrics.ts';
import {
  createDevCa,
  type DevCa,
  issueLeaf,
  type IssueLeafOptions,
  writeLeaf,
} from '../../src/tls/dev-ca.ts';
import { FilesTlsSource } from '../../src/tls/files-source.ts';
import { MeshTls } from '../../src/tls/mesh-tls.ts';
import { tlsPoolFactory } from '../../src/tls/tls-pool-factory.ts';
import type { TlsSource } from '../../src/tls/tls-source.ts';
import { makeEndpoint } from '../../src/upstream/endpoint.ts';
import { UpstreamTable } from '../../src/upstream/upstream-table.ts';
import { writeFile } from 'node:fs/promises';
import { tempDir as makeTempDir } from '../helpers/temp-dir.ts';

export const TRUST_DOMAIN = 'mesh.test';

/** A logger whose JSON lines land in `logs`. */
export function captureLogger(): { logger: Logger; logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line));
      cb();
    },
  });
  return { logger: createLogger('info', sink), logs };
}

/** A fresh temp directory, removed after the test file (test/helpers/temp-dir.ts). */
export function tempDir(prefix = 'meshlet-tls-'): string {
  return makeTempDir(prefix);
}

/** A CA and a directory holding `ca.pem`; `leaf()` issues and writes `<service>.pem` / `<service>-key.pem`. */
export interface TestPki {
  readonly trustDomain: string;
  readonly ca: DevCa;
  readonly dir: string;
  readonly caFile: string;
  issue(
    service: string,
    extra?: Partial<IssueLeafOptions>,
  ): Promise<{ certPem: string; keyPem: string; serialNumber: string }>;
  /** Issues and writes a leaf; returns the file paths and serial. */
  write(
    service: string,
    extra?: Partial<IssueLeafOptions>,
  ): Promise<{ cert: string; key: string; serialNumber: string }>;
}

export async function makePki(trustDomain = TRUST_DOMAIN): Promise<TestPki> {
  const ca = await createDevCa({ trustDomain });
  const dir = tempDir();
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, ca.certPem);
  const issue = (service: string, extra: Partial<IssueLeafOptions> = {}) =>
    issueLeaf({ ca, service, trustDomain, ...extra });
  return {
    trustDomain,
    ca,
    dir,
    caFile,
    issue,
    async write(service, extra) {
      const leaf = await issue(service, extra);
      const paths = await writeLeaf(dir, service, leaf);
      return { ...paths, serialNumber: leaf.serialNumber };
    },
  };
}

/** The `tls` config block of a meshlet that is `service` in `pki`, from freshly written files. */
export async function tlsFilesConfig(pki: TestPki, service: string) {
  const leaf = await pki.write(service);
  return {
    source: 'files' as const,
    cert: leaf.cert,
    key: leaf.key,
    ca: pki.caFile,
    trustDomain: pki.trustDomain,
  };
}

/** A static registry entry for a peer meshlet's inbound mTLS listener (`meta.meshlet_inbound: mtls`). */
export function peerEndpoint(peer: { daemon: { addresses(): { inbound?: { port: number } } } }) {
  return {
    address: '127.0.0.1',
    port: peer.daemon.addresses().inbound!.port,
    meta: { meshlet_inbound: 'mtls' },
  };
}

/** Starts a MeshTls over the files of `service` in `pki` (issuing them when absent). */
export async function filesTls(
  pki: TestPki,
  service: string,
  logger: Logger,
  metrics = new Metrics({ processMetrics: false }),
): Promise<{ tls: MeshTls; metrics: Metrics; tlsMetrics: TlsMetrics; source: FilesTlsSource }> {
  const paths = await pki.write(service);
  const tlsMetrics = new TlsMetrics(metrics.registry);
  const source = new FilesTlsSource({
    paths: { cert: paths.cert, key: paths.key, ca: pki.caFile },
    trustDomain: pki.trustDomain,
    logger,
    metrics: tlsMetrics,
    pollMs: 0,
  });
  const tls = new MeshTls({ source, metrics: tlsMetrics, logger });
  await tls.start();
  return { tls, metrics, tlsMetrics, source };
}

/** An inbound side (meshlet B) in this process. */
export interface TestInbound {
  readonly port: number;
  readonly listener: HttpListener;
  readonly ctx: InboundContext;
  readonly tls: MeshTls;
  readonly metrics: Metrics;
  readonly logs: Record<string, unknown>[];
  close(): Promise<void>;
}

export interface InboundSpec {
  service: string;
  appPort: number;
  allow?: readonly string[] | '*';
  maxConcurrent?: number;
  rate?: { perSecond: number; burst: number };
  maxHeaderSize?: number;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Wait for the app's response headers, ms (default 15 s). */
  appTimeoutMs?: number;
  /** Longest gap in the app's response body, ms (default 5 min). */
  idleTimeoutMs?: number;
  /** Use this source instead of files from the PKI. */
  source?: TlsSource;
}

export async function startInbound(pki: TestPki, spec: InboundSpec): Promise<TestInbound> {
  const { logger, logs } = captureLogger();
  let tls: MeshTls;
  const metrics = new Metrics({ processMetrics: false });
  let tlsMetrics: TlsMetrics;
  if (spec.source === undefined) {
    const made = await filesTls(pki, spec.service, logger, metrics);
    tls = made.tls;
    tlsMetrics = made.tlsMetrics;
  } else {
    tlsMetrics = new TlsMetrics(metrics.registry);
    tls = new MeshTls({ source: spec.source, metrics: tlsMetrics, logger });
    await tls.start();
  }
  const app = new Pool(`http://127.0.0.1:${spec.appPort}`, { pipelining: 1 });
  const source = tls.source;
  const ctx: InboundContext = {
    logger,
    access: new AccessLog(logger, { enabled: true, sampleRate: 1 }),
    tlsMetrics,
    metrics: metrics.forUpstream('inbound', spec.service),
    service: spec.service,
    app,
    allow: spec.allow ?? '*',
    authorize:
      source.authorize === undefined ? undefined : (peer) => source.authorize!(peer.identity, peer.serial),
    maxConcurrent: spec.maxConcurrent ?? 1024,
    active: 0,
    rateLimit:
      spec.rate === undefined
        ? null
        : new KeyedTokenBuckets({ ratePerSecond: spec.rate.perSecond, burst: spec.rate.burst }),
    appTimeoutMs: spec.appTimeoutMs ?? 15_000,
    idleTimeoutMs: spec.idleTimeoutMs ?? 300_000,
    draining: false,
  };
  const listener = await listenInbound('127.0.0.1', 0, tls, inboundHandler(ctx), {
    maxHeaderSize: spec.maxHeaderSize,
    headersTimeoutMs: spec.headersTimeoutMs,
    requestTimeoutMs: spec.requestTimeoutMs,
  });
  return {
    port: listener.port,
    listener,
    ctx,
    tls,
    metrics,
    logs,
    async close() {
      listener.stopAccepting();
      listener.destroy();
      await app.close();
      await tls.stop();
    },
  };
}

/** An outbound side (meshlet A) in this process: outbound listener whose upstreams are mTLS endpoints. */
export interface TestOutbound {
  readonly url: string;
  readonly table: UpstreamTable;
  readonly tls: MeshTls;
  readonly metrics: Metrics;
  readonly logs: Record<string, unknown>[];
  close(): Promise<void>;
}

export async function startOutbound(
  pki: TestPki,
  service: string,
  upstreams: Record<string, { port: number; transport?: 'mtls' | 'plain' }[]>,
  source?: TlsSource,
): Promise<TestOutbound> {
  const { logger, logs } = captureLogger();
  const metrics = new Metrics({ processMetrics: false });
  let tls: MeshTls;
  if (source === undefined) tls = (await filesTls(pki, service, logger, metrics)).tls;
  else {
    tls = new MeshTls({ source, metrics: new TlsMetrics(metrics.registry), logger });
    await tls.start();
  }
  const table = new UpstreamTable(metrics, {}, upstreamSpec.parse({}), tlsPoolFactory(tls));
  for (const [name, eps] of Object.entries(upstreams)) {
    table.setEndpoints(
      name,
      eps.map((e) => makeEndpoint('127.0.0.1', e.port, { transport: e.transport ?? 'mtls' })),
    );
  }
  const router = new Router([], table);
  const ctx: ProxyContext = {
    logger,
    access: new AccessLog(logger, { enabled: true, sampleRate: 1 }),
    metrics,
    upstreams: table,
    unrouted: metrics.forUpstream('outbound', ''),
    draining: false,
    bodyTimeoutMs: 30_000,
  };
  const listener = await listenHttp(
    '127.0.0.1',
    0,
    outboundHandler(ctx, () => router),
  );
  return {
    url: `http://127.0.0.1:${listener.port}`,
    table,
    tls,
    metrics,
    logs,
    async close() {
      listener.stopAccepting();
      listener.destroy();
      await table.close();
      await tls.stop();
    },
  };
}

/** What a direct HTTPS request to an inbound listener got: a response, or the error that ended it. */
export interface TlsReply {
  status?: number;
  headers?: Record<string, string | string[] | undefined>;
  body?: string;
  error?: string;
  /** Serial of the server certificate seen. */
  serverSerial?: string;
}

/** One HTTPS request with a fresh connection, presenting `cert`/`key` (or none), trusting `ca`. */
export function tlsRequest(
  port: number,
  opts: {
    ca: string;
    cert?: string;
    key?: string;
    path?: string;
    headers?: Record<string, string>;
    method?: string;
    body?: string;
    timeoutMs?: number;
  },
): Promise<TlsReply> {
  return new Promise((resolve) => {
    let serverSerial: string | undefined;
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: opts.path ?? '/',
        method: opts.method ?? 'GET',
        headers: opts.headers,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        agent: false,
        checkServerIdentity: () => undefined,
        timeout: opts.timeoutMs ?? 5000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body, serverSerial }));
        res.on('error', (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
      },
    );
    req.on('socket', (s) => {
      s.once('secureConnect', () => {
        serverSerial = (s as TLSSocket).getPeerCertificate().serialNumber;
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ error: err.code ?? err.message, serverSerial }),
    );
    req.end(opts.body);
  });
}

/** Reads one metric sample value from a registry ("name{a="b"}" exact label match), 0 when absent. */
export async function metricValue(
  metrics: Metrics,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  if (m === undefined) return 0;
  const hit = m.values.find((v) =>
    Object.entries(labels).every(([k, val]) => String((v.labels as Record<string, unknown>)[k]) === val),
  );
  return hit?.value ?? 0;
}
