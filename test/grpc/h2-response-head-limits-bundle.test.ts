// The bundled daemon (dist/daemon, where undici's node:http2 is src/http2/undici-http2.ts) reads long HTTP/2 response heads and refuses over-limit ones as the in-process daemon does.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleDaemon } from '../../scripts/bundle-daemon.ts';
import { handOver } from '../../src/config/config-handover.ts';
import { loadConfigFile } from '../../src/config/load-config.ts';
import { grpcCall, h2Get, named, startH2Endpoint } from './long-heads-endpoint.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('the bundled daemon and HTTP/2 response heads', () => {
  // Inside the repository, two levels below a directory holding protos/, as dist/daemon is.
  const dir = join(ROOT, '.scratch', `h2-heads-bundle-${process.pid}`);
  const entry = join(dir, 'dist', 'daemon', 'daemon-main.js');
  const configFile = join(dir, 'meshlet.yaml');
  let app: Awaited<ReturnType<typeof startH2Endpoint>>;
  let proc: ChildProcess | undefined;
  let outbound = '';

  beforeAll(async () => {
    mkdirSync(dir, { recursive: true });
    symlinkSync(join(ROOT, 'protos'), join(dir, 'protos'));
    await bundleDaemon(join(dir, 'dist', 'daemon'));
    app = await startH2Endpoint();
    writeFileSync(
      configFile,
      `listeners: { outbound: { port: 0 }, admin: { port: 0 } }
registry: { type: static, endpoints: { h2: ["${app.endpoint}"], g: ["${app.endpoint}"] } }
upstreams: { h2: { protocol: http2, retries: { attempts: 1 } }, g: { protocol: grpc } }
`,
    );
    // As `meshlet run` starts it: the validated config handed over.
    const env: NodeJS.ProcessEnv = { ...process.env, MESHLET_GC_TUNED: '1' };
    expect(handOver(env, configFile, loadConfigFile(configFile))).toBe(true);
    const child = spawn(process.execPath, [entry, '--config', configFile, '--log-level', 'info'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc = child;
    outbound = await new Promise((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => reject(new Error(`bundle did not start: ${stdout}${stderr}`)), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        const line = stdout.split('\n').find((l) => l.includes('"meshlet started"'));
        if (line === undefined) return;
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${(JSON.parse(line) as { outbound: { port: number } }).outbound.port}`);
      });
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`bundle exited with ${code}: ${stdout}${stderr}`));
      });
    });
  }, 60_000);

  afterAll(async () => {
    if (proc?.pid !== undefined && proc.exitCode === null) {
      const exited = new Promise((r) => proc!.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
    }
    await new Promise<void>((r) => (app ? app.server.close(() => r()) : r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes 200 header fields and 200 trailer fields from an h2c endpoint', async () => {
    const reply = await h2Get(outbound, 'h2', '/many');
    expect(reply.error).toBeUndefined();
    expect(reply.headers[':status']).toBe(200);
    expect(reply.body.toString()).toBe('ok');
    expect(named(reply.headers, 'x-f-')).toHaveLength(200);
    expect(named(reply.trailers, 'x-t-')).toHaveLength(200);
  });

  it('passes a gRPC call with 200 metadata and 200 trailing entries', async () => {
    const reply = await grpcCall(outbound, 'g', '/pkg.Svc/Many');
    expect(reply.error).toBeUndefined();
    expect(named(reply.headers, 'x-md-')).toHaveLength(200);
    expect(reply.trailers?.['grpc-status']).toBe('0');
    expect(named(reply.trailers, 'x-tr-')).toHaveLength(200);
  });

  it('answers an over-limit head 502 "response headers too large"', async () => {
    const reply = await h2Get(outbound, 'h2', '/huge');
    expect(reply.headers[':status']).toBe(502);
    expect(reply.headers['x-meshlet-error']).toBe('upstream_unreachable');
    expect((JSON.parse(reply.body.toString()) as { message: string }).message).toBe(
      `endpoint ${app.endpoint}: response headers too large (UND_ERR_HEADERS_OVERFLOW)`,
    );
  });
});
