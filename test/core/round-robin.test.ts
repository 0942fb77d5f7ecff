// Round robin over real endpoints: 300 requests land evenly (±10%) on 3 endpoints.

import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('round robin', () => {
  let apps: TestUpstream[];
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    apps = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { users: apps.map((a) => a.endpoint) } },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await Promise.all(apps.map((a) => a.close()));
  });

  it('spreads 300 requests over 3 endpoints within ±10% of even', async () => {
    const counts = new Map<string, number>();
    for (let batch = 0; batch < 30; batch++) {
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          const res = await request(`${mesh.outbound}/`, { headers: { host: 'users' } });
          const port = String(res.headers['x-upstream-port']);
          counts.set(port, (counts.get(port) ?? 0) + 1);
          await res.body.dump();
        }),
      );
    }
    expect(counts.size).toBe(3);
    for (const n of counts.values()) {
      expect(n).toBeGreaterThanOrEqual(90);
      expect(n).toBeLessThanOrEqual(110);
    }
  });
});
