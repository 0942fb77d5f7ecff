// An upstream's per-try and idle timeouts, on meshlet's own timers: on time, counted against the endpoint, never against a slow client (one that reads nothing is test/hostile-h1/slow-reader.test.ts).
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

const IDLE_MS = 300;
const PER_TRY_MS = 2200;
const BIG = 16 * 1024 * 1024;

describe('upstream timeouts', () => {
  const stalled: ServerResponse[] = [];
  let app: TestUpstream;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    app = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/never') {
        stalled.push(res);
        return;
      }
      if (req.url === '/stall') {
        // Headers and a first chunk, then nothing.
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first;');
        stalled.push(res);
        return;
      }
      if (req.url === '/drip') {
        // Ten chunks, each well within the idle limit of the one before.
        res.writeHead(200, { 'content-type': 'text/plain' });
        let n = 0;
        const tick = setInterval(() => {
          res.write(`${n};`);
          if (++n === 10) {
            clearInterval(tick);
            res.end();
          }
        }, IDLE_MS / 2);
        return;
      }
      // /big: 16 MiB at once, far more than the sockets buffer.
      res.writeHead(200, { 'content-length': String(BIG) });
      res.end(Buffer.alloc(BIG, 'm'));
    });
    const plain = { retries: { attempts: 1 }, outlierDetection: { enabled: false } };
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { idle: [app.endpoint], pertry: [app.endpoint] } },
      upstreams: {
        idle: { ...plain, timeouts: { idle: `${IDLE_MS}ms` } },
        pertry: { ...plain, timeouts: { request: '10s', perTry: `${PER_TRY_MS}ms` } },
      },
      accessLog: { enabled: false },
    });
  });
  afterAll(async () => {
    for (const res of stalled) res.destroy();
    await mesh?.close();
    await app?.close();
  });

  const timeouts = async (upstream: string): Promise<number> => {
    const text = await (await request(`${mesh.admin}/metrics`)).body.text();
    const line = text
      .split('\n')
      .find((l) => l.startsWith(`meshlet_upstream_attempts_total{upstream="${upstream}",result="timeout"}`));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };

  it('a response body that goes idle is cut after the idle timeout, and the endpoint gets the timeout', async () => {
    const before = await timeouts('idle');
    const started = performance.now();
    const res = await request(`${mesh.outbound}/stall`, { headers: { host: 'idle' } });
    expect(res.statusCode).toBe(200);
    const chunks: string[] = [];
    const outcome = await new Promise<string>((resolve) => {
      res.body.on('data', (c: Buffer) => chunks.push(String(c)));
      res.body.on('error', (e) => resolve(`error: ${e.message}`));
      res.body.on('end', () => resolve('end'));
    });
    const elapsed = performance.now() - started;
    expect(chunks.join('')).toBe('first;');
    expect(outcome).toMatch(/^error/);
    expect(elapsed).toBeGreaterThanOrEqual(IDLE_MS - 10);
    // undici's own body timer, which meshlet used before, ran on a ~1 s tick.
    expect(elapsed).toBeLessThan(IDLE_MS + 600);
    expect(await timeouts('idle')).toBe(before + 1);
  });

  it('a body whose chunks come within the idle timeout of each other is served whole, however long it takes', async () => {
    const res = await request(`${mesh.outbound}/drip`, { headers: { host: 'idle' } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('0;1;2;3;4;5;6;7;8;9;');
  });

  it('a client that reads in bursts — pausing most of the idle timeout between reads, longer than it in all — is not cut, and no idle timeout is counted', async () => {
    const before = await timeouts('idle');
    const res = await request(`${mesh.outbound}/big`, { headers: { host: 'idle' } });
    expect(res.statusCode).toBe(200);
    let bytes = 0;
    let upTo = 0;
    let reached: (() => void) | null = null;
    res.body.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes >= upTo && reached !== null) {
        res.body.pause();
        reached();
        reached = null;
      }
    });
    res.body.pause();
    // Four pauses of 0.8 × the idle timeout (more than three idle timeouts in all), each followed
    // by reading 3 MiB: meshlet sees the response it queued for the client move (the kernel tells
    // a sender its socket is writable again only once a good part of its buffer drained).
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, IDLE_MS * 0.8));
      upTo = bytes + 3 * 1024 * 1024;
      await new Promise<void>((r) => {
        reached = r;
        res.body.resume();
      });
    }
    expect(bytes).toBeLessThan(BIG);
    await new Promise((resolve, reject) => res.body.once('end', resolve).once('error', reject).resume());
    expect(bytes).toBe(BIG);
    expect(await timeouts('idle')).toBe(before);
  });

  it('a per-try timeout of more than 2 s fires on time (504), not on a coarse tick', async () => {
    const before = await timeouts('pertry');
    const started = performance.now();
    const res = await request(`${mesh.outbound}/never`, { headers: { host: 'pertry' } });
    const elapsed = performance.now() - started;
    const body = (await res.body.json()) as { error: string };
    expect(res.statusCode).toBe(504);
    expect(body.error).toBe('upstream_timeout');
    expect(elapsed).toBeGreaterThanOrEqual(PER_TRY_MS - 10);
    expect(elapsed).toBeLessThan(PER_TRY_MS + 250);
    expect(await timeouts('pertry')).toBe(before + 1);
  });
});
