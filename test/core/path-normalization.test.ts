// Issue 11 item 5: a request that matches a prefix route never reaches the upstream outside that prefix.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizePath } from '../../src/route/path-normalize.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

/** What each probe must come to: forwarded as `path` to an upstream, or refused with `status`/`code`. */
type Outcome = { to: 'pub' | 'strip' | 'other'; path: string } | { refused: 400 | 404; code: string };

// The request paths of the issue, as raw bytes (clients would normalise or escape some of them).
const PROBES = [
  '/public/../secret',
  '/public/%2e%2e/secret',
  '/public/%2E%2e/secret',
  '/public/..%2fsecret',
  '/public/..%5csecret',
  '/public/..\\secret',
  '/public//x',
  '/public/./x',
] as const;

describe('paths are normalised before route matching', () => {
  let pub: TestUpstream;
  let strip: TestUpstream;
  let raw: TestUpstream;
  let other: TestUpstream;
  let mesh: InProcessMeshlet;
  let perUpstreamPort: number;

  beforeAll(async () => {
    [pub, strip, raw, other] = await Promise.all([
      startUpstream(),
      startUpstream(),
      startUpstream(),
      startUpstream(),
    ]);
    perUpstreamPort = await closedPort();
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          pub: [pub.endpoint],
          strip: [strip.endpoint],
          raw: [raw.endpoint],
          other: [other.endpoint],
        },
      },
      upstreams: { pub: { port: perUpstreamPort } },
      routes: [
        { match: { authority: 'stripping', pathPrefix: '/public/' }, upstream: 'strip', stripPrefix: true },
        { match: { authority: 'raw', pathPrefix: '/public/' }, upstream: 'raw', normalizePath: false },
        { match: { pathPrefix: '/public/' }, upstream: 'pub' },
      ],
    });
  });
  afterAll(async () => {
    await mesh.close();
    await Promise.all([pub.close(), strip.close(), raw.close(), other.close()]);
  });

  /** Sends `GET path` with `Host: host` as raw bytes to `port` (the outbound listener by default). */
  async function send(path: string, host: string, port = mesh.daemon.addresses().outbound.port) {
    return parseReply(
      await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    );
  }

  /** Sends each probe and checks it against `expected`: which upstream saw which path, or the refusal. */
  async function expectOutcomes(host: string, expected: Record<(typeof PROBES)[number], Outcome>) {
    const upstreams = { pub, strip, other };
    for (const path of PROBES) {
      const want = expected[path];
      const before = { pub: pub.requests.length, strip: strip.requests.length, other: other.requests.length };
      const reply = await send(path, host);
      if ('refused' in want) {
        expect({ path, status: reply.status, code: reply.headers['x-meshlet-error'] }).toEqual({
          path,
          status: want.refused,
          code: want.code,
        });
        expect((JSON.parse(reply.body) as { error: string }).error).toBe(want.code);
      } else {
        expect({ path, status: reply.status }).toEqual({ path, status: 200 });
        const seen = upstreams[want.to].requests.slice(before[want.to]).map((r) => r.url);
        expect({ path, seen }).toEqual({ path, seen: [want.path] });
      }
      for (const name of ['pub', 'strip', 'other'] as const) {
        if ('to' in want && want.to === name) continue;
        expect({ path, name, seen: upstreams[name].requests.length }).toEqual({
          path,
          name,
          seen: before[name],
        });
      }
    }
  }

  it('without stripPrefix: the prefix upstream sees only normalised paths under /public/', async () => {
    const encodedSlash = { refused: 400, code: 'bad_request' } as const;
    await expectOutcomes('other', {
      '/public/../secret': { to: 'other', path: '/secret' },
      '/public/%2e%2e/secret': { to: 'other', path: '/secret' },
      '/public/%2E%2e/secret': { to: 'other', path: '/secret' },
      '/public/..%2fsecret': encodedSlash,
      '/public/..%5csecret': encodedSlash,
      '/public/..\\secret': encodedSlash,
      '/public//x': { to: 'pub', path: '/public/x' },
      '/public/./x': { to: 'pub', path: '/public/x' },
    });
    for (const { url } of pub.requests) {
      expect(url.startsWith('/public/')).toBe(true);
      expect(normalizePath(url)).toBe(url);
    }
  });

  it('an escaped unreserved character cannot spell a prefix around its route: /%70ublic/x is /public/x', async () => {
    const before = { pub: pub.requests.length, other: other.requests.length };
    for (const path of ['/%70ublic/x', '/%70%75%62%6C%69%63/x']) {
      const reply = await send(path, 'other');
      expect({ path, status: reply.status }).toEqual({ path, status: 200 });
    }
    expect(pub.requests.slice(before.pub).map((r) => r.url)).toEqual(['/public/x', '/public/x']);
    expect(other.requests.length).toBe(before.other);
  });

  it('with stripPrefix: what is left after the prefix never climbs out of it', async () => {
    const refused = { refused: 400, code: 'bad_request' } as const;
    const noRoute = { refused: 404, code: 'no_route' } as const;
    // Host "stripping" names no upstream: a path that left /public/ has nowhere to go.
    await expectOutcomes('stripping', {
      '/public/../secret': noRoute,
      '/public/%2e%2e/secret': noRoute,
      '/public/%2E%2e/secret': noRoute,
      '/public/..%2fsecret': refused,
      '/public/..%5csecret': refused,
      '/public/..\\secret': refused,
      '/public//x': { to: 'strip', path: '/x' },
      '/public/./x': { to: 'strip', path: '/x' },
    });
    for (const { url } of strip.requests) expect(normalizePath(url)).toBe(url);
  });

  it('a refused path is answered by meshlet: 400 bad_request with its JSON body and header', async () => {
    const reply = await send('/public/..%2fsecret?q=1', 'other');
    expect(reply.status).toBe(400);
    expect(reply.headers['x-meshlet-error']).toBe('bad_request');
    expect(JSON.parse(reply.body)).toEqual({
      error: 'bad_request',
      message:
        'the request path has an encoded slash or backslash (%2F, %5C), which meshlet does not forward',
      upstream: 'pub',
    });
  });

  it('the query is forwarded untouched, dots, escapes and all', async () => {
    const reply = await send('/public/a/../b?next=/../%2F\\x&y=//', 'other');
    expect(reply.status).toBe(200);
    expect(pub.requests.at(-1)?.url).toBe('/public/b?next=/../%2F\\x&y=//');
  });

  it('the default authority route forwards the normalised path too', async () => {
    const reply = await send('/v1//users/./42/../43', 'other');
    expect(reply.status).toBe(200);
    expect(other.requests.at(-1)?.url).toBe('/v1/users/43');
    expect((await send('/v1/a%2Fb', 'other')).headers['x-meshlet-error']).toBe('bad_request');
  });

  it('a per-upstream listener normalises and refuses like a route', async () => {
    const reply = await send('/a/%2e%2e/../b//c', 'anything', perUpstreamPort);
    expect(reply.status).toBe(200);
    expect(pub.requests.at(-1)?.url).toBe('/b/c');
    const refused = await send('/a/..%5Cb', 'anything', perUpstreamPort);
    expect(refused.status).toBe(400);
    expect(refused.headers['x-meshlet-error']).toBe('bad_request');
  });

  it('normalizePath: false on a route matches and forwards the raw path (the escape hatch)', async () => {
    for (const path of ['/public/../secret', '/public/%2e%2e/secret', '/public/..%2fsecret', '/public//x']) {
      const reply = await send(path, 'raw');
      expect({ path, status: reply.status }).toEqual({ path, status: 200 });
      expect(raw.requests.at(-1)?.url).toBe(path);
    }
  });
});
