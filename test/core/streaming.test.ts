// Bodies stream through a real meshlet process: 50 MiB each way while its RSS grows less than either body.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MeshletProcess, rssOf, spawnMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

const MIB = 1024 * 1024;
const TOTAL = 50 * MIB;
const CHUNK = Buffer.alloc(64 * 1024, 'meshlet-');

/** A 50 MiB stream produced lazily, so the test process does not hold it either. */
function bigBody(): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= TOTAL) return this.push(null);
      sent += CHUNK.length;
      this.push(CHUNK);
    },
  });
}

describe('streaming bodies', () => {
  let app: TestUpstream;
  let mesh: MeshletProcess;
  let peakRss = 0;
  let sampler: NodeJS.Timeout;

  beforeAll(async () => {
    app = await startUpstream((req, res) => {
      if (req.method === 'POST') {
        // Count and hash what arrives, slowly enough that backpressure must hold the body back.
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          bytes += c.length;
          hash.update(c);
        });
        req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      bigBody().pipe(res);
    });
    mesh = await spawnMeshlet({
      registry: { type: 'static', endpoints: { big: [app.endpoint] } },
      accessLog: { enabled: false },
    });
    sampler = setInterval(async () => {
      peakRss = Math.max(peakRss, await rssOf(mesh.proc.pid!).catch(() => 0));
    }, 20);
  });
  afterAll(async () => {
    clearInterval(sampler);
    mesh.proc.kill('SIGKILL');
    await app.close();
  });

  it('streams 50 MiB up and 50 MiB down with RSS growth under 60 MiB (holding either body would add 50 more)', async () => {
    // Warm up so the baseline includes loaded code, pools and buffers of a normal request.
    await (await request(`${mesh.outbound}/warm`, { headers: { host: 'big' }, method: 'HEAD' })).body.dump();
    const baseline = await rssOf(mesh.proc.pid!);
    peakRss = baseline;

    const expected = createHash('sha256');
    for (let i = 0; i < TOTAL / CHUNK.length; i++) expected.update(CHUNK);
    const up = await request(`${mesh.outbound}/upload`, {
      method: 'POST',
      headers: { host: 'big', 'content-type': 'application/octet-stream' },
      body: bigBody(),
    });
    expect(up.statusCode).toBe(200);
    expect(await up.body.json()).toEqual({ bytes: TOTAL, sha256: expected.digest('hex') });

    const down = await request(`${mesh.outbound}/download`, { headers: { host: 'big' } });
    expect(down.statusCode).toBe(200);
    let received = 0;
    for await (const chunk of down.body) {
      received += (chunk as Buffer).length;
      // A slow reader: meshlet must hold the upstream back rather than buffer.
      if (received % (8 * MIB) < CHUNK.length) await new Promise((r) => setTimeout(r, 10));
    }
    expect(received).toBe(TOTAL);
    peakRss = Math.max(peakRss, await rssOf(mesh.proc.pid!));
    // What streaming does add is dead 64 KiB read buffers waiting for a scavenge, then for jemalloc
    // to return their pages (1 s decay): 37-46 MiB with the 2 MiB young generation, the upper end
    // when the machine is busy. Either body held whole would add its 50 MiB on top of that.
    expect(peakRss - baseline).toBeLessThan(60 * MIB);
  }, 60_000);
});
