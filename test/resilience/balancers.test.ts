// Balancers over real endpoints: latency-aware ones avoid a slow endpoint; hashing ones keep keys in place.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { makeEndpoint } from '../../src/upstream/endpoint.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

const delayed = (ms: number) =>
  startUpstream((req, res) => {
    req.resume();
    setTimeout(() => {
      res.setHeader('x-upstream-port', String(req.socket.localPort ?? 0));
      res.end('ok');
    }, ms);
  });

describe('load balancers', () => {
  let fast1: TestUpstream;
  let fast2: TestUpstream;
  let slow: TestUpstream;
  let keyed: TestUpstream[];
  let mesh: InProcessMeshlet;
  const agent = new Agent({ connections: 16 });

  beforeAll(async () => {
    [fast1, fast2, slow] = await Promise.all([delayed(3), delayed(3), delayed(30)]);
    keyed = await Promise.all([startUpstream(), startUpstream(), startUpstream(), startUpstream()]);
    const three = [fast1.endpoint, fast2.endpoint, slow.endpoint];
    const noRetryNoEject = { retries: { attempts: 1 }, outlierDetection: { enabled: false } };
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          rr: three,
          lr: three,
          ewma: three,
          ring: keyed.slice(0, 3).map((u) => u.endpoint),
          mag: keyed.slice(0, 3).map((u) => u.endpoint),
        },
      },
      upstreams: {
        rr: { loadBalancer: 'round_robin', ...noRetryNoEject },
        lr: { loadBalancer: 'least_request', ...noRetryNoEject },
        ewma: { loadBalancer: 'peak_ewma', ...noRetryNoEject },
        ring: { loadBalancer: 'ring_hash', hashOn: { header: 'x-user' } },
        mag: { loadBalancer: 'maglev', hashOn: { cookie: 'session' } },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    await mesh.close();
    await agent.close();
    await Promise.all([fast1, fast2, slow, ...keyed].map((u) => u.close()));
  });

  /** Share of 240 requests (12 concurrent) that landed on the slow endpoint. */
  async function slowShare(host: string): Promise<number> {
    let toSlow = 0;
    const total = 240;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        next++;
        const res = await request(`${mesh.outbound}/`, { headers: { host }, dispatcher: agent });
        if (Number(res.headers['x-upstream-port']) === slow.port) toSlow++;
        await res.body.dump();
      }
    };
    await Promise.all(Array.from({ length: 12 }, worker));
    return toSlow / total;
  }

  it('least_request and peak_ewma send measurably less to a 10× slower endpoint than round_robin', async () => {
    const rr = await slowShare('rr');
    const lr = await slowShare('lr');
    const ewma = await slowShare('ewma');
    expect(rr).toBeGreaterThan(0.28);
    expect(lr).toBeLessThan(rr * 0.7);
    expect(ewma).toBeLessThan(rr * 0.7);
  });

  async function placement(
    host: string,
    keyHeader: (k: string) => Record<string, string>,
  ): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (let i = 0; i < 300; i += 30) {
      await Promise.all(
        Array.from({ length: 30 }, async (_, j) => {
          const key = `user-${i + j}`;
          const res = await request(`${mesh.outbound}/`, {
            headers: { host, ...keyHeader(key) },
            dispatcher: agent,
          });
          out.set(key, String(res.headers['x-upstream-port']));
          await res.body.dump();
        }),
      );
    }
    return out;
  }

  it.each([
    ['ring', (k: string) => ({ 'x-user': k })],
    ['mag', (k: string) => ({ cookie: `theme=dark; session=${k}` })],
  ])(
    '%s keeps at least 65%% of keys on their endpoint when a fourth endpoint joins three',
    async (host, hdr) => {
      const before = await placement(host, hdr);
      expect(await placement(host, hdr)).toEqual(before); // same key, same endpoint
      mesh.daemon.table.setEndpoints(
        host,
        keyed.map((u) => makeEndpoint(u.address, u.port)),
      );
      const after = await placement(host, hdr);
      let kept = 0;
      for (const [k, port] of before) if (after.get(k) === port) kept++;
      expect(kept / before.size).toBeGreaterThanOrEqual(0.65);
      expect(new Set(after.values()).size).toBe(4);
    },
  );
});
