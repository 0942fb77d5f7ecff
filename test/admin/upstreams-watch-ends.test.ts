// `meshlet upstreams --watch` ends in one line: meshlet shutting down ends it with exit 1 and a reason; a bad --admin-grpc is a usage error (exit 2).
import { describe, expect, it } from 'vitest';
import { runCli, startMeshlet } from '../helpers/meshlet.ts';
import { spawnWatch } from './watch-process.ts';

describe('meshlet upstreams --watch: how it ends', () => {
  it('meshlet shutting down ends the watch with exit 1 and one stderr line saying the stream ended', async () => {
    const mesh = await startMeshlet({
      listeners: { adminGrpc: { port: 0 } },
      registry: { type: 'static', endpoints: { users: ['127.0.0.1:9001'] } },
      accessLog: { enabled: false },
    });
    const watch = spawnWatch(['--admin', mesh.admin]);
    try {
      await watch.shows('127.0.0.1:9001', 8000);
    } finally {
      await mesh.close();
    }
    expect(await watch.exited).toBe(1);
    const lines = watch.err().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^meshlet: watching upstreams on 127\.0\.0\.1:\d+: the stream ended/);
  }, 20_000);

  it('an --admin-grpc that is not HOST:PORT exits 2 with one line naming it; [::1]:PORT is taken', async () => {
    const bad = ['', 'http://127.0.0.1:15002', '127.0.0.1', '127.0.0.1:99999'];
    const runs = await Promise.all(
      [...bad, '[::1]:1'].map((target) => runCli(['upstreams', '--watch', '--admin-grpc', target])),
    );
    for (const [i, target] of bad.entries()) {
      const { code, stderr } = runs[i]!;
      expect({ target, code, stderr }).toEqual({
        target,
        code: 2,
        stderr: `meshlet: --admin-grpc: expected HOST:PORT like "127.0.0.1:15002", got "${target}"\n`,
      });
    }
    // A well-formed target is dialled: nothing listens there, so it is unreachable (exit 1), not a usage error.
    const { code, stderr } = runs[bad.length]!;
    expect(code).toBe(1);
    expect(stderr).toMatch(/^meshlet: watching upstreams on \[::1\]:1: 14 UNAVAILABLE/);
  }, 30_000);
});
