// Admin answers carry the `Date` field RFC 9110 §6.6.1 asks of an origin server with a clock, written by meshlet (utc-time.ts), not node:http.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';

const IMF_FIXDATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

describe('admin API Date field', () => {
  let mesh: InProcessMeshlet;
  beforeAll(async () => {
    mesh = await startMeshlet({
      listeners: { adminGrpc: { enabled: false } },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh?.close();
  });

  it.each(['/', '/live', '/ready', '/metrics', '/config', '/upstreams', '/nope'])(
    'GET %s answers with one IMF-fixdate Date of now',
    async (path) => {
      const before = Math.floor(Date.now() / 1000) * 1000;
      const res = await request(`${mesh.admin}${path}`);
      await res.body.text();
      const after = Date.now();
      const date = res.headers.date;
      expect(typeof date, 'one Date field').toBe('string');
      expect(date).toMatch(IMF_FIXDATE);
      const at = Date.parse(date as string);
      expect(at).toBeGreaterThanOrEqual(before);
      expect(at).toBeLessThanOrEqual(after);
    },
  );

  it('a wrong method (405) and a refused mutation carry it too', async () => {
    for (const [path, method] of [
      ['/live', 'POST'],
      ['/drain', 'GET'],
    ] as const) {
      const res = await request(`${mesh.admin}${path}`, { method });
      await res.body.text();
      expect(res.statusCode).toBe(405);
      expect(res.headers.date).toMatch(IMF_FIXDATE);
    }
    const refused = await request(`${mesh.admin}/drain`, {
      method: 'POST',
      headers: { origin: 'https://evil.example' },
    });
    await refused.body.text();
    expect(refused.statusCode).toBe(403);
    expect(refused.headers.date).toMatch(IMF_FIXDATE);
  });
});
