// A response malformed right after its head (in the same read): the client gets a 502, not a closed connection with no answer, and the endpoint is blamed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { metricValue } from '../helpers/metrics.ts';
import { EARLY_MALFORMED, protocolName } from './early-malformed.ts';
import { clientRequest, honestBody, HOSTILE_PATH, type ScriptedEndpoint } from './response-endpoints.ts';

/** What the follow-up request's honest answer says, by what is wrong with the response. */
const NEXT: Record<string, string> = {
  'a chunk size that is not hex': honestBody('/next', 2),
  'a negative chunk size': honestBody('/next', 2),
  'a chunk shorter than its data': honestBody('/next', 2),
  'DATA past the content-length': honestBody('stream 2', 2),
  'DATA ending short of the content-length': honestBody('stream 2', 1),
  'DATA on a 204': honestBody('stream 2', 2),
};

const rows = EARLY_MALFORMED.map((r) => ({
  ...r,
  name: `${protocolName(r.protocol)}: ${r.what}`,
  next: NEXT[r.what]!,
}));

describe('a response malformed in the read that carried its head', () => {
  const endpoints: ScriptedEndpoint[] = [];
  let mesh: InProcessMeshlet;
  let port: number;
  beforeAll(async () => {
    for (const row of rows) endpoints.push(await row.start());
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: Object.fromEntries(rows.map((_, i) => [`m${i}`, [endpoints[i]!.endpoint]])),
      },
      upstreams: Object.fromEntries(
        rows.map((row, i) => [
          `m${i}`,
          { protocol: row.protocol, retries: { attempts: 1 }, timeouts: { perTry: '2s', idle: '400ms' } },
        ]),
      ),
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh?.close();
    for (const e of endpoints) await e.close();
  });

  it.each(rows.map((row, i) => ({ ...row, i })))(
    '$name: 502 upstream_unreachable, counted as a reset of the endpoint; the next client gets its own answer',
    async (row) => {
      const upstream = `m${row.i}`;
      const got = await clientRequest(port, HOSTILE_PATH, upstream);
      expect(got.status, JSON.stringify(got.raw)).toBe(502);
      expect(got.headers['x-meshlet-error']).toBe('upstream_unreachable');
      expect(got.complete).toBe(true);
      expect(got.raw).not.toContain('SECRET');
      expect(
        await metricValue(mesh.admin, 'meshlet_upstream_attempts_total', { upstream, result: 'reset' }),
      ).toBe(1);
      const next = await clientRequest(port, '/next', upstream);
      expect(next.status, next.raw).toBe(200);
      expect(next.body).toBe(row.next);
    },
  );
});
