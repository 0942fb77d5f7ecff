// The daemon as `npm run build` ships it (dist/daemon/, one esbuild bundle): serves HTTP/1.1, h2c and HTTP/2 upstreams, reloads, answers the gRPC admin API, and leaves node:http2 unloaded until HTTP/2 is used.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleDaemon, UNDICI_ON_DEMAND } from '../../scripts/bundle-daemon.ts';
import { daemonEntry } from '../../src/cli/gc-tuning.ts';
import { handOver } from '../../src/config/config-handover.ts';
import { loadConfigFile } from '../../src/config/load-config.ts';
import { healthClient, unary } from '../admin/admin-grpc-client.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RECORD_BUILTINS = fileURLToPath(new URL('../helpers/record-builtins.ts', import.meta.url));

/** A GET over h2c (prior knowledge) to 127.0.0.1:port. */
function h2cGet(port: number, path: string, authority: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':path': path, ':authority': authority });
    let body = '';
    let status = 0;
    req.setEncoding('utf8');
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      session.close();
      resolve({ status, body });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the bundled daemon (dist/daemon)', () => {
  // Two levels below a directory holding protos/, as dist/daemon is, and inside the repository so
  // the packages left out of the bundle resolve from node_modules.
  const dir = join(ROOT, '.scratch', `bundle-${process.pid}`);
  const entry = join(dir, 'dist', 'daemon', 'daemon-main.js');
  const builtinsLog = join(dir, 'builtins.log');
  const configFile = join(dir, 'meshlet.yaml');
  let h1: TestUpstream;
  let h2: http2.Http2Server;
  let h2Port = 0;
  let benchPort = 0;
  let proc: ChildProcess;
  let stdout = '';
  let started: { outbound: number; admin: number; bench: number };

  const builtins = (): string[] => readFileSync(builtinsLog, 'utf8').split('\n');
  const config = (
    prefix: string,
  ): string => `listeners: { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { port: 0 } }
registry: { type: static, endpoints: { bench: ["${h1.endpoint}"], h2app: [{ address: 127.0.0.1, port: ${h2Port}, protocol: http2 }] } }
upstreams: { bench: { port: ${benchPort} }, h2app: { protocol: http2 } }
routes: [{ match: { pathPrefix: "${prefix}" }, upstream: bench }]
`;

  beforeAll(async () => {
    mkdirSync(dir, { recursive: true });
    symlinkSync(join(ROOT, 'protos'), join(dir, 'protos'));
    await bundleDaemon(join(dir, 'dist', 'daemon'));
    h1 = await startUpstream((req, res) => {
      req.resume();
      res.end(`h1 ${req.url}`);
    });
    h2 = http2.createServer((req, res) => res.end(`h2 ${req.url} over HTTP/${req.httpVersion}`));
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    h2Port = (h2.address() as { port: number }).port;
    // Free a moment ago: per-upstream listeners need a fixed port.
    benchPort = await closedPort();
    writeFileSync(configFile, config('/via-route/'));
    // As `meshlet run` starts it: the validated config handed over, so the daemon loads no config parser.
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      MESHLET_GC_TUNED: '1',
      MESHLET_TEST_BUILTINS_LOG: builtinsLog,
      NODE_OPTIONS: `--import ${RECORD_BUILTINS}`,
    };
    expect(handOver(env, configFile, loadConfigFile(configFile))).toBe(true);
    proc = spawn(
      process.execPath,
      ['--max-semi-space-size=2', entry, '--config', configFile, '--log-level', 'info'],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    started = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`bundle did not start: ${stdout}`)), 20_000);
      proc.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        const line = stdout.split('\n').find((l) => l.includes('"meshlet started"'));
        if (line === undefined) return;
        clearTimeout(timer);
        const e = JSON.parse(line) as {
          outbound: { port: number };
          admin: { port: number };
          upstreams: { bench: { port: number } };
        };
        resolve({ outbound: e.outbound.port, admin: e.admin.port, bench: e.upstreams.bench.port });
      });
      let stderr = '';
      proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      proc.once('exit', (code) => reject(new Error(`bundle exited with ${code}: ${stdout}${stderr}`)));
    });
  }, 60_000);

  afterAll(async () => {
    proc?.kill('SIGKILL');
    await h1?.close();
    h2?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('meshlet run picks the bundle when it sits beside dist/cli, and src/ otherwise', () => {
    mkdirSync(join(dir, 'dist', 'cli'), { recursive: true });
    expect(daemonEntry(`file://${join(dir, 'dist', 'cli', 'gc-tuning.js')}`)).toBe(entry);
    expect(daemonEntry(`file://${join(ROOT, 'src', 'cli', 'gc-tuning.ts')}`)).toBe(
      join(ROOT, 'src', 'cli', 'daemon-main.ts'),
    );
  });

  it('idle, it has loaded neither node:http2, Node’s own undici, WebCrypto nor zlib', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const loaded = builtins();
    expect(loaded).toContain('http');
    for (const m of ['http2', 'internal/deps/undici/undici', 'internal/crypto/webcrypto', 'zlib'])
      expect(loaded, m).not.toContain(m);
  });

  it('leaves undici’s WebAssembly parsers and fetch body code in node_modules, and OpenTelemetry’s API out of every chunk', () => {
    const outdir = join(dir, 'dist', 'daemon');
    const chunks = readdirSync(outdir)
      .filter((f) => f.endsWith('.js'))
      .map((f) => ({ f, js: readFileSync(join(outdir, f), 'utf8') }));
    expect(chunks.length).toBeGreaterThan(1);
    const sources: string[] = [];
    for (const { f, js } of chunks) {
      // "\0asm", WebAssembly's magic number, as base64: the start of every inlined parser.
      expect(/["'`]AGFzbQ/.test(js), f).toBe(false);
      expect(js.includes('node_modules/undici/lib/web/fetch/body.js'), f).toBe(false);
      // prom-client's default collectors (and with them OpenTelemetry's API) are left out: no
      // chunk's source map names a source of it.
      const map = JSON.parse(readFileSync(join(outdir, `${f}.map`), 'utf8')) as { sources: string[] };
      expect(
        map.sources.filter((source) => source.includes('@opentelemetry')),
        f,
      ).toEqual([]);
      sources.push(...map.sources);
    }
    // The maps do name the bundled packages: prom-client's metric classes are in.
    expect(sources.some((source) => source.includes('node_modules/prom-client/lib/counter.js'))).toBe(true);
    const all = chunks.map((c) => c.js).join('\n');
    for (const part of UNDICI_ON_DEMAND) expect(all, part).toContain(`require("undici/${part}")`);
  });

  it('proxies HTTP/1.1 and h2c clients to an HTTP/1.1 upstream (its parser loaded from node_modules)', async () => {
    const res = await request(`http://127.0.0.1:${started.bench}/one`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('h1 /one');
    const h2c = await h2cGet(started.bench, '/two', 'bench');
    expect(h2c).toEqual({ status: 200, body: 'h1 /two' });
  });

  it('speaks HTTP/2 to an http2 upstream (node:http2 loaded on first use)', async () => {
    const res = await request(`http://127.0.0.1:${started.outbound}/three`, { headers: { host: 'h2app' } });
    expect(await res.body.text()).toBe('h2 /three over HTTP/2.0');
    expect(res.statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect(builtins()).toContain('http2');
  });

  it('reloads on SIGHUP (the config loader is a lazy chunk)', async () => {
    const before = await request(`http://127.0.0.1:${started.outbound}/after-reload/x`);
    await before.body.text();
    expect(before.statusCode).not.toBe(200);
    writeFileSync(configFile, config('/after-reload/'));
    proc.kill('SIGHUP');
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline) {
      const res = await request(`http://127.0.0.1:${started.outbound}/after-reload/x`);
      await res.body.text();
      status = res.statusCode;
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
    // The log line is written asynchronously: under load it can reach stdout after the new route answers.
    while (!/config reloaded/.test(stdout) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(stdout).toMatch(/config reloaded/);
  });

  it('answers the gRPC admin API (grpc-js from node_modules, .proto files found from dist/daemon)', async () => {
    const index = (await (await request(`http://127.0.0.1:${started.admin}/`)).body.json()) as {
      grpc: { address: string } | null;
    };
    const client = healthClient(index.grpc!.address);
    try {
      const reply = await unary<{ status: string }>(client, 'Check', { service: '' });
      expect(reply.status).toBe('SERVING');
    } finally {
      client.close();
    }
  });
});
