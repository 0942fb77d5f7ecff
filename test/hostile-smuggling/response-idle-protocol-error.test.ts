// An endpoint that sends bytes on an idle HTTP/1.1 connection (after a complete response) counts a gateway failure with outlier detection; a normal idle close does not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { scrapeMetrics, sampleValue } from '../helpers/metrics.ts';
import { upstreamState } from '../helpers/upstream-state.ts';
import {
  clientRequest,
  type H1Script,
  HOSTILE_PATH,
  type ScriptedEndpoint,
  startH1Endpoint,
} from './response-endpoints.ts';

const OK_HI = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi';
/** A whole response an attacker would like another client to read as its own. */
const INJECTED = 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nSECRET';
/** The warning meshlet writes for such an endpoint. */
const LOG_MSG = 'endpoint broke HTTP/1.1 on an idle connection';

/** One failure of any gateway kind ejects (for 60 s); one of two endpoints may be ejected. */
const OUTLIER = {
  consecutiveGatewayFailure: 1,
  consecutive5xx: 1,
  consecutiveConnectFailure: 1,
  baseEjectionTime: '60s',
  maxEjectionPercent: 50,
};

/** Scripts of the endpoint that closes idle connections the normal ways (each path its own way). */
const CALM: Record<string, H1Script> = {
  // The endpoint's FIN on the idle connection right after a complete answer.
  '/fin': { bytes: OK_HI, closeAfterMs: 0 },
  // `connection: close`: meshlet closes the connection itself after the answer.
  '/close': { bytes: 'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi' },
  // A keep-alive hint too short to reuse the connection: meshlet closes it.
  '/keep-alive': { bytes: 'HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 2\r\n\r\nhi' },
  // A body delimited by the close.
  '/until-close': { bytes: 'HTTP/1.1 200 OK\r\n\r\nhi', closeAfterMs: 20 },
};

let meshlet: InProcessMeshlet;
const ends: Record<string, ScriptedEndpoint> = {};

beforeAll(async () => {
  ends.second = await startH1Endpoint({ bytes: OK_HI, later: INJECTED });
  ends.garbage = await startH1Endpoint({ bytes: OK_HI + '\x00garbage\r\n' });
  ends.calm = await startH1Endpoint(CALM);
  ends.lone = await startH1Endpoint({ bytes: OK_HI, later: 'garbage\r\n' });
  ends.honest1 = await startH1Endpoint({});
  ends.honest2 = await startH1Endpoint({});
  ends.honest3 = await startH1Endpoint({});
  meshlet = await startMeshlet({
    registry: {
      type: 'static',
      endpoints: {
        second: [ends.second.endpoint, ends.honest1.endpoint],
        garbage: [ends.garbage.endpoint, ends.honest2.endpoint],
        calm: [ends.calm.endpoint, ends.honest3.endpoint],
        lone: [ends.lone.endpoint],
      },
    },
    upstreams: {
      second: { outlierDetection: OUTLIER },
      garbage: { outlierDetection: OUTLIER },
      calm: { outlierDetection: OUTLIER },
      lone: { outlierDetection: OUTLIER },
    },
  });
}, 30_000);

afterAll(async () => {
  await meshlet?.close();
  for (const e of Object.values(ends)) await e.close();
});

/**
 * Sends `GET path` to `upstream` through the outbound listener until the scripted endpoint (not the
 * honest one, which answers `ok PATH cN`) answered it: at most 6 tries (round robin over two).
 */
async function hitScripted(upstream: string, path: string): Promise<void> {
  const port = meshlet.daemon.addresses().outbound.port;
  for (let i = 0; i < 6; i++) {
    const reply = await clientRequest(port, path, upstream);
    expect(reply.status).toBe(200);
    if (reply.body === 'hi') return;
  }
  throw new Error(`the scripted endpoint of ${upstream} never answered ${path}`);
}

/** Polls `check` every 25 ms until it holds, for at most `ms` (default 3000); throws with `what` when it never does. */
async function until(what: string, check: () => Promise<boolean> | boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Ejections of `upstream` by kind (gateway), and its endpoints ejected now, from /metrics. */
async function ejections(upstream: string): Promise<{ total: number; active: number }> {
  const text = await scrapeMetrics(meshlet.admin);
  return {
    total: sampleValue(text, 'meshlet_outlier_ejections_total', { upstream, kind: 'gateway' }),
    active: sampleValue(text, 'meshlet_upstream_endpoints', { upstream, state: 'ejected' }),
  };
}

/** meshlet's warnings about `endpoint` (`127.0.0.1:PORT`). */
function warnings(endpoint: string): Record<string, unknown>[] {
  return meshlet.logs.filter((l) => l.msg === LOG_MSG && l.endpoint === endpoint);
}

describe('an endpoint that sends bytes on an idle HTTP/1.1 connection', () => {
  for (const name of ['second', 'garbage'] as const) {
    const what = name === 'second' ? 'a second response 30 ms later' : 'garbage in the same write';
    it(`is ejected by outlier detection as a gateway failure: ${what}`, async () => {
      await hitScripted(name, HOSTILE_PATH);
      await until(`an ejection of ${name}`, async () => (await ejections(name)).total === 1);
      expect(await ejections(name)).toEqual({ total: 1, active: 1 });
      const state = await upstreamState(meshlet.admin, name);
      const ejected = state.endpoints.filter((e) => e.state === 'ejected').map((e) => e.id);
      expect(ejected).toEqual([ends[name]!.endpoint]);
      // Requests go on to the other endpoint only.
      const port = meshlet.daemon.addresses().outbound.port;
      for (let i = 0; i < 3; i++) {
        const reply = await clientRequest(port, HOSTILE_PATH, name);
        expect(reply.body).toMatch(/^ok \/hostile c\d+$/);
      }
      await until('the warning', () => warnings(ends[name]!.endpoint).length === 1);
      expect(warnings(ends[name]!.endpoint)[0]).toMatchObject({
        level: 'warn',
        upstream: name,
        reason: 'unsolicited_response',
        error: 'bad response',
        ejected: true,
      });
    });
  }

  it('is warned about at most once per 10 s (a lone endpoint is never ejected)', async () => {
    const lone = ends.lone!;
    await hitScripted('lone', HOSTILE_PATH);
    await until('the first warning', () => warnings(lone.endpoint).length === 1);
    expect(warnings(lone.endpoint)[0]).toMatchObject({ upstream: 'lone', ejected: false });
    // The connection was closed, not reused: the next answer comes on a second one, which breaks too.
    await hitScripted('lone', HOSTILE_PATH);
    expect(lone.connections()).toBe(2);
    // Its garbage comes 30 ms after the answer; give undici's 'disconnect' time.
    await new Promise((r) => setTimeout(r, 300));
    expect(warnings(lone.endpoint)).toHaveLength(1);
    expect(await ejections('lone')).toEqual({ total: 0, active: 0 });
  });
});

describe('an idle HTTP/1.1 connection closed the normal way', () => {
  it('counts nothing against its endpoint: the peer FIN, connection: close, a short keep-alive, a close-delimited body', async () => {
    const calm = ends.calm!;
    let connections = 0;
    for (const path of Object.keys(CALM)) {
      await hitScripted('calm', path);
      connections += 1;
      // Let the close land (undici's 'disconnect') before judging it and sending the next request.
      await new Promise((r) => setTimeout(r, 150));
      expect(await ejections('calm'), `after ${path}`).toEqual({ total: 0, active: 0 });
      // Each way closes the connection: the next answer from this endpoint comes on a new one.
      expect(calm.connections()).toBe(connections);
    }
    const state = await upstreamState(meshlet.admin, 'calm');
    expect(state.endpoints.map((e) => e.state)).toEqual(['healthy', 'healthy']);
    expect(warnings(calm.endpoint)).toHaveLength(0);
  });
});
