// The processes a bench run compares: the fixed upstream, meshlet variants, node-http-proxy, HAProxy, nginx.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, sleep, start, waitForPort, which } from './proc.ts';

/** One thing the load is pointed at: 127.0.0.1:port, served by process `pid` (null for direct). */
export interface Target {
  key: string;
  label: string;
  port: number;
  pid: number | null;
  child: ChildProcess | null;
  /** meshlet's admin port (`GET /ready`); unset for the other targets. */
  adminPort?: number;
}

let MESHLET_MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/** The meshlet entry point the bench runs (for `meshlet certs` too). */
export function meshletMain(): string {
  return MESHLET_MAIN;
}

/**
 * Issues a mesh CA and one certificate per service into `dir` with `meshlet certs`, as users do:
 * `ca.pem`, then `SERVICE.pem` and `SERVICE-key.pem` (trust domain `bench.local`).
 */
export function issueCerts(dir: string, services: readonly string[]): void {
  const cli = (...args: string[]): void =>
    void execFileSync(process.execPath, [MESHLET_MAIN, 'certs', ...args], { stdio: 'ignore' });
  cli('init', '--trust-domain', 'bench.local', '--out', dir);
  for (const svc of services) cli('issue', '--service', svc, '--ca', dir, '--out', dir);
}

/** Runs meshlet from another tree's src/cli/main.ts (see `--ref` in run.ts). */
export function useMeshletMain(file: string): void {
  MESHLET_MAIN = file;
}
const NODE_UPSTREAM = fileURLToPath(new URL('../servers/node-upstream.ts', import.meta.url));
const HTTP_PROXY = fileURLToPath(new URL('../servers/http-proxy.ts', import.meta.url));
const UNDICI_PROXY = fileURLToPath(new URL('../servers/undici-proxy.ts', import.meta.url));
const CONSUL_DOUBLE = fileURLToPath(new URL('../../test/consul-double/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');

/**
 * Compiles `src/` of `tree` to `dist/`: meshlet is measured as users run it (`bin/meshlet.js`, compiled
 * JS), not through Node's type stripping, which alone costs ~27 MiB of RSS. For the working tree this
 * is `npm run build`: tsc, then the daemon bundle (`scripts/bundle-daemon.ts` → dist/daemon/) when
 * that script exists. A `--ref` tree (src/ only) gets no bundle, so its daemon runs unbundled.
 * @returns a note for the report when the bundle was not built, else null.
 */
export function buildDist(tree: string): string | null {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  if (tree.replace(/\/$/, '') === ROOT) {
    execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
    const bundler = join(ROOT, 'scripts', 'bundle-daemon.ts');
    if (existsSync(bundler)) {
      execFileSync(process.execPath, [bundler], { stdio: 'inherit', cwd: ROOT });
      return null;
    }
    // A bundle left from another build would run instead of the code just compiled.
    rmSync(join(ROOT, 'dist', 'daemon'), { recursive: true, force: true });
    return 'no scripts/bundle-daemon.ts: the daemon runs unbundled (dist/cli/daemon-main.js)';
  }
  // Inside the tree, so `types` resolve through its node_modules link.
  const config = join(tree, 'tsconfig.bench.json');
  writeFileSync(
    config,
    JSON.stringify({
      extends: join(ROOT, 'tsconfig.json'),
      compilerOptions: {
        rootDir: join(tree, 'src'),
        outDir: join(tree, 'dist'),
        noEmit: false,
        sourceMap: false,
      },
      include: [join(tree, 'src')],
      exclude: [join(tree, 'src', '**', '*.test.ts')],
    }),
  );
  execFileSync(process.execPath, [tsc, '-p', config], { stdio: 'inherit' });
  return '--ref: the daemon bundle (dist/daemon/) is not built for a --ref tree; its daemon runs unbundled';
}

export const NGINX = which('nginx');
export const HAPROXY = which('haproxy');

/** The 100-byte body of the fixed upstream. */
export const SMALL_BODY = `${'meshlet-bench '.repeat(7)}xx`;
if (SMALL_BODY.length !== 100) throw new Error('SMALL_BODY must be 100 bytes');

async function ready(t: Target): Promise<Target> {
  await waitForPort(t.port, 20_000, t.child ?? undefined);
  return t;
}

/** The fixed upstream: nginx (1 worker, no master) when installed, else a small Node server. */
export async function startUpstream(dir: string): Promise<{ target: Target; kind: string }> {
  const port = await freePort();
  if (NGINX !== null) {
    const root = join(dir, 'www');
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, '1m.bin'), Buffer.alloc(1024 * 1024, 'y'));
    const conf = join(dir, 'nginx-upstream.conf');
    writeFileSync(
      conf,
      `worker_processes 1;
master_process off;
daemon off;
pid ${dir}/nginx-upstream.pid;
error_log ${dir}/nginx-upstream.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  client_body_temp_path ${dir}/nginx-upstream-body;
  proxy_temp_path ${dir}/nginx-upstream-proxy;
  server {
    listen 127.0.0.1:${port} reuseport;
    location = / { default_type text/plain; return 200 "${SMALL_BODY}"; }
    location / { root ${root}; }
  }
}
`,
    );
    const child = start(NGINX, ['-p', dir, '-e', `${dir}/nginx-upstream.error.log`, '-c', conf]);
    const target = await ready({ key: 'direct', label: 'direct (no proxy)', port, pid: null, child });
    return { target, kind: 'nginx (1 worker, 100-byte body on /, 1 MiB file on /1m.bin)' };
  }
  const child = start(process.execPath, [NODE_UPSTREAM, String(port)]);
  const target = await ready({ key: 'direct', label: 'direct (no proxy)', port, pid: null, child });
  return { target, kind: `Node ${process.version} node:http server (nginx not installed; 100-byte body)` };
}

/** Options of {@link startMeshlet}. */
export interface MeshletOptions {
  key: string;
  label: string;
  /** `MESHLET_SEMI_SPACE_MB`; undefined = meshlet's own default (1). */
  semiSpaceMb?: number;
  accessLog: boolean;
  /** Endpoint the `bench` upstream points at. */
  upstreamPort: number;
  dir: string;
  /** Extra node flags (placed before the script, e.g. --cpu-prof); then the re-exec is skipped. */
  nodeFlags?: string[];
  /** The `bench` endpoint as YAML; default `"127.0.0.1:<upstreamPort>"`. */
  endpointYaml?: string;
  /** More top-level config (YAML lines), e.g. `tls:` and `service:` for the mTLS hops. */
  extraYaml?: string;
  /** `listeners.inbound` port (mTLS listener), when this meshlet takes peers' calls. */
  inboundPort?: number;
  /** Name of the upstream behind the per-upstream listener; default `bench`. */
  upstream?: string;
  /** `upstreams.NAME.protocol` (`grpc` in the gRPC phase); default unset (meshlet's http1). */
  protocol?: 'http1' | 'http2' | 'grpc';
  /** The `registry:` value as one YAML flow mapping; default a static registry for the upstream. */
  registryYaml?: string;
  /** `listeners.adminGrpc.port`; default unset (15002, and a taken 15002 only logs a warning). */
  adminGrpcPort?: number;
  /** Variables added to meshlet's environment (e.g. NODE_OPTIONS for bench/memory.ts's probes). */
  env?: NodeJS.ProcessEnv;
}

/** A meshlet with its defaults and a per-upstream listener for `bench`, from src/ (Node strips types). */
export async function startMeshlet(o: MeshletOptions): Promise<Target> {
  const [port, outbound, admin] = [await freePort(), await freePort(), await freePort()];
  const conf = join(o.dir, `${o.key}.yaml`);
  const name = o.upstream ?? 'bench';
  const protocol = o.protocol === undefined ? '' : `, protocol: ${o.protocol}`;
  writeFileSync(
    conf,
    `listeners: { outbound: { port: ${outbound} }, admin: { port: ${admin} }${
      o.inboundPort === undefined ? '' : `, inbound: { address: 127.0.0.1, port: ${o.inboundPort} }`
    }${o.adminGrpcPort === undefined ? '' : `, adminGrpc: { port: ${o.adminGrpcPort} }`} }
registry: ${o.registryYaml ?? `{ type: static, endpoints: { ${name}: [${o.endpointYaml ?? `"127.0.0.1:${o.upstreamPort}"`}] } }`}
upstreams: { ${name}: { port: ${port}${protocol} } }
accessLog: { enabled: ${o.accessLog} }
${o.extraYaml ?? ''}`,
  );
  const env: NodeJS.ProcessEnv = { ...process.env, ...o.env };
  delete env.MESHLET_SEMI_SPACE_MB;
  delete env.MESHLET_GC_TUNED;
  if (o.semiSpaceMb !== undefined) env.MESHLET_SEMI_SPACE_MB = String(o.semiSpaceMb);
  const child = start(process.execPath, [...(o.nodeFlags ?? []), MESHLET_MAIN, 'run', '--config', conf], {
    env,
    logFile: join(o.dir, `${o.key}.log`),
  });
  return ready({ key: o.key, label: o.label, port, pid: child.pid ?? null, child, adminPort: admin });
}

/** Resolves once meshlet's `GET /ready` answers 200; rejects after `timeoutMs` or when `t` exits. */
export async function waitReady(t: Target, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (t.child !== null && t.child.exitCode !== null)
      throw new Error(`${t.key} exited with code ${t.child.exitCode} before it was ready`);
    const status = await fetch(`http://127.0.0.1:${t.adminPort}/ready`, { signal: AbortSignal.timeout(1000) })
      .then(async (r) => (await r.arrayBuffer(), r.status))
      .catch(() => 0);
    if (status === 200) return;
    if (Date.now() > deadline)
      throw new Error(`${t.key}: /ready not 200 within ${timeoutMs} ms (last ${status})`);
    await sleep(100);
  }
}

/** Options of {@link startFullMeshlet}: those of {@link startMeshlet} its config sets itself left out. */
export type FullMeshletOptions = Omit<
  MeshletOptions,
  'upstreamPort' | 'registryYaml' | 'inboundPort' | 'endpointYaml' | 'accessLog'
>;

/**
 * meshlet with the issue's "full" config: a Consul registry (the agent is test/consul-double, a
 * faithful fake with the Connect CA endpoints), an HTTP health check of a local app
 * (bench/servers/node-upstream.ts, 200 on every path), the mTLS inbound listener with its
 * certificate from the Connect CA (`tls: { source: consul }`), one per-upstream listener (`bench`,
 * no instances: not for load), access log off, no drain delay on SIGTERM. Resolves once `/ready`
 * answers 200 (registered, synced, certificate loaded).
 * @returns the meshlet target and the two helpers it needs (stop them with it).
 */
export async function startFullMeshlet(
  o: FullMeshletOptions,
): Promise<{ target: Target; helpers: ChildProcess[] }> {
  const [consulPort, appPort, inboundPort] = [await freePort(), await freePort(), await freePort()];
  const consul = start(process.execPath, [CONSUL_DOUBLE, '--listen', `127.0.0.1:${consulPort}`], {
    logFile: join(o.dir, `${o.key}-consul.log`),
  });
  const app = start(process.execPath, [NODE_UPSTREAM, String(appPort)]);
  const helpers = [consul, app];
  await waitForPort(consulPort, 20_000, consul);
  await waitForPort(appPort, 20_000, app);
  const target = await startMeshlet({
    ...o,
    accessLog: false,
    upstreamPort: 0,
    inboundPort,
    registryYaml: `{ type: consul, consul: { address: "http://127.0.0.1:${consulPort}" }, check: { http: /health, interval: 5s, timeout: 1s } }`,
    extraYaml: `service: { name: web, port: ${appPort}, address: 127.0.0.1 }
tls: { source: consul }
shutdown: { drainDelay: 0s }
${o.extraYaml ?? ''}`,
  });
  try {
    await waitReady(target);
  } catch (err) {
    let tail = '';
    try {
      tail = readFileSync(join(o.dir, `${o.key}.log`), 'utf8').slice(-1500);
    } catch {
      // no log
    }
    throw new Error(`${(err as Error).message}\n${tail}`);
  }
  return { target, helpers };
}

/** A proxy script of bench/servers/ (`SCRIPT LISTEN_PORT UPSTREAM_PORT`), with Node's default GC settings. */
async function startNodeProxy(
  script: string,
  key: string,
  label: string,
  upstreamPort: number,
  dir: string,
): Promise<Target> {
  const port = await freePort();
  const child = start(process.execPath, [script, String(port), String(upstreamPort)], {
    logFile: join(dir, `${key}.log`),
  });
  return ready({ key, label, port, pid: child.pid ?? null, child });
}

/** node-http-proxy with a keep-alive agent. */
export function startHttpProxy(upstreamPort: number, dir: string): Promise<Target> {
  return startNodeProxy(HTTP_PROXY, 'http-proxy', 'node-http-proxy, keep-alive agent', upstreamPort, dir);
}

/** A bare node:http → undici Pool proxy: the floor under any Node proxy. */
export function startUndiciProxy(upstreamPort: number, dir: string): Promise<Target> {
  const label = 'bare undici proxy (node:http → undici Pool, no policies)';
  return startNodeProxy(UNDICI_PROXY, 'undici-proxy', label, upstreamPort, dir);
}

/** HAProxy, one thread, keep-alive to the upstream; null when not installed. */
export async function startHaproxy(upstreamPort: number, dir: string): Promise<Target | null> {
  if (HAPROXY === null) return null;
  const port = await freePort();
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(
    conf,
    `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  server app 127.0.0.1:${upstreamPort}
`,
  );
  const child = start(HAPROXY, ['-db', '-f', conf], { logFile: join(dir, 'haproxy.log') });
  return ready({ key: 'haproxy', label: 'HAProxy, 1 thread', port, pid: child.pid ?? null, child });
}

/** nginx as a reverse proxy, one worker (no master), keep-alive upstream; null when not installed. */
export async function startNginxProxy(upstreamPort: number, dir: string): Promise<Target | null> {
  if (NGINX === null) return null;
  const port = await freePort();
  const conf = join(dir, 'nginx-proxy.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
master_process off;
daemon off;
pid ${dir}/nginx-proxy.pid;
error_log ${dir}/nginx-proxy.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  client_body_temp_path ${dir}/nginx-proxy-body;
  proxy_temp_path ${dir}/nginx-proxy-temp;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  const child = start(NGINX, ['-p', dir, '-e', `${dir}/nginx-proxy.error.log`, '-c', conf]);
  return ready({ key: 'nginx', label: 'nginx, 1 worker', port, pid: child.pid ?? null, child });
}
