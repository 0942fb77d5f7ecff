import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HANDOVER_ENV, HANDOVER_MAX_BYTES, handOver, takeHandedOver } from './config-handover.ts';
import { loadConfigFile } from './load-config.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-handover-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configFile(name: string, yaml: string): string {
  const file = join(dir, name);
  writeFileSync(file, yaml);
  return file;
}

// Every kind of value the schema produces: durations, defaults, optional sections, resolved paths.
const CONFIGS = {
  'static.yaml': `
registry: { type: static, endpoints: { users: ["127.0.0.1:8081", { address: "::1", port: 8082, weight: 3, tags: [a] }] } }
upstreams:
  users:
    port: 9191
    loadBalancer: ring_hash
    hashOn: { header: X-User }
    timeouts: { connect: 250ms, request: 2s, perTry: 500ms }
    retries: { attempts: 3, retryOn: [5xx, reset] }
routes:
  - match: { pathPrefix: /api/, headers: [{ name: x-canary, exact: "1" }] }
    upstream: users
    stripPrefix: true
    timeouts: { request: 1s }
accessLog: { sampleRate: 0.25 }
shutdown: { drainTimeout: 10s }
`,
  'consul.yaml': `
service: { name: web, port: 8080, tags: [v1], meta: { team: core } }
registry:
  type: consul
  consul: { address: "http://127.0.0.1:8500", tokenFile: ./token }
  register: true
  check: { http: /health, interval: 5s, timeout: 1s }
tls: { source: consul }
listeners:
  admin: { port: 15000, token: "s3cret-token" }
  inbound: { port: 15443, allow: [spiffe://dc1/ns/default/svc/api] }
`,
  'files-tls.yaml': `
service: { name: web, port: 8080 }
tls: { source: files, cert: ./cert.pem, key: ./key.pem, ca: ./ca.pem }
`,
};

describe('config handover across the re-exec', () => {
  for (const [name, yaml] of Object.entries(CONFIGS)) {
    it(`hands over ${name} so the daemon gets exactly what the CLI validated`, () => {
      const file = configFile(name, yaml);
      const config = loadConfigFile(file);
      const env: NodeJS.ProcessEnv = {};
      expect(handOver(env, file, config)).toBe(true);
      expect(typeof env[HANDOVER_ENV]).toBe('string');
      const taken = takeHandedOver(file, env);
      expect(taken).toStrictEqual(config);
      expect(env[HANDOVER_ENV]).toBeUndefined();
      // Taken once: the variable does not outlive the daemon's start.
      expect(takeHandedOver(file, env)).toBeUndefined();
    });
  }

  it('carries the defaults, so the daemon needs no schema for an upstream or inbound listener config does not name', () => {
    const file = configFile('defaults.yaml', CONFIGS['files-tls.yaml']);
    const env: NodeJS.ProcessEnv = {};
    handOver(env, file, loadConfigFile(file));
    const taken = takeHandedOver(file, env)!;
    expect(taken.listeners.inbound).toBeUndefined();
    expect(taken.defaults.inboundListener.port).toBe(15443);
    expect(taken.defaults.upstream.timeouts.connect).toBe(1000);
    expect(taken.defaults.upstream.loadBalancer).toBe('round_robin');
  });

  it('refuses a handover meant for another config file, or one that does not parse (the daemon then loads the file)', () => {
    const file = configFile('one.yaml', CONFIGS['static.yaml']);
    const env: NodeJS.ProcessEnv = {};
    handOver(env, file, loadConfigFile(file));
    expect(takeHandedOver(join(dir, 'other.yaml'), env)).toBeUndefined();
    expect(env[HANDOVER_ENV]).toBeUndefined();
    env[HANDOVER_ENV] = '{"file": truncated';
    expect(takeHandedOver(file, env)).toBeUndefined();
    expect(env[HANDOVER_ENV]).toBeUndefined();
  });

  it(`does not hand over a config whose JSON exceeds ${HANDOVER_MAX_BYTES} bytes (Linux caps an environment string at 128 KiB)`, () => {
    const endpoints = Array.from({ length: 6000 }, (_, i) => `"10.0.${i >> 8}.${i & 255}:8080"`).join(', ');
    const file = configFile('big.yaml', `registry: { type: static, endpoints: { users: [${endpoints}] } }\n`);
    const env: NodeJS.ProcessEnv = { [HANDOVER_ENV]: 'stale' };
    expect(handOver(env, file, loadConfigFile(file))).toBe(false);
    expect(env[HANDOVER_ENV]).toBeUndefined();
  });
});
