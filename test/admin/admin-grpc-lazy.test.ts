// The gRPC admin API on loopback is bound at start but loads grpc-js only when its first call comes.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { type MeshletProcess, spawnMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { healthClient, unary } from './admin-grpc-client.ts';

const RECORD_MODULES = fileURLToPath(new URL('../helpers/record-modules.ts', import.meta.url));

describe('gRPC admin API, loaded on first use', () => {
  let mesh: MeshletProcess | undefined;
  afterEach(() => {
    mesh?.proc.kill('SIGKILL');
  });

  it('an idle meshlet has the port bound without grpc-js; the first Health/Check loads it and is answered', async () => {
    const log = writeConfig('', 'modules.log');
    process.env.MESHLET_TEST_MODULE_LOG = log;
    process.env.NODE_OPTIONS = `--import ${RECORD_MODULES}`;
    try {
      mesh = await spawnMeshlet({
        listeners: { adminGrpc: { port: 0 } },
        registry: { type: 'static', endpoints: {} },
      });
    } finally {
      delete process.env.NODE_OPTIONS;
      delete process.env.MESHLET_TEST_MODULE_LOG;
    }
    const index = (await (await request(`${mesh.admin}/`)).body.json()) as {
      grpc: { address: string } | null;
    };
    expect(index.grpc?.address).toMatch(/^127\.0\.0\.1:\d+$/);
    const idle = readFileSync(log, 'utf8');
    expect(idle).toMatch(/lazy-admin-grpc\.(ts|js)\n/);
    expect(idle).not.toMatch(/node_modules\/@grpc\//);

    const client = healthClient(index.grpc!.address);
    try {
      const reply = (await unary(client, 'Check', { service: '' })) as { status: string };
      expect(reply.status).toBe('SERVING');
    } finally {
      client.close();
    }
    expect(readFileSync(log, 'utf8')).toMatch(/node_modules\/@grpc\/grpc-js\//);
  });
});
