// Gateway CORS: a route's responses to requests without `Origin` carry `vary: origin` too, so a shared cache never serves them to a cross-origin caller.
import { writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { call, gatewayUrl } from './fixtures.ts';

describe('gateway CORS: vary: origin on responses to requests without Origin', () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let gw: string;

  beforeAll(async () => {
    // A cacheable answer, with compression middleware's Vary on /cors/gz only.
    upstream = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, {
        'cache-control': 'public, max-age=60',
        ...(req.url?.endsWith('/gz') === true ? { vary: 'Accept-Encoding' } : {}),
      });
      res.end('ok');
    });
    // No keys: the 401 case needs an authenticator only.
    const keys = join(tempDir('meshlet-gw-vary-'), 'keys.yaml');
    writeFileSync(keys, 'keys: []\n');
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      gateway: {
        auth: { keys: { type: 'apiKey', file: keys } },
        routes: [
          { match: { pathPrefix: '/cors/' }, upstream: 'users', cors: { origins: ['https://a.example'] } },
          {
            match: { pathPrefix: '/any/' },
            upstream: 'users',
            cors: { origins: ['*'] },
          },
          {
            match: { pathPrefix: '/private/' },
            upstream: 'users',
            auth: ['keys'],
            cors: { origins: ['https://a.example'] },
          },
          { match: { pathPrefix: '/plain/' }, upstream: 'users' },
        ],
      },
    });
    gw = gatewayUrl(m.daemon);
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  const vary = (v: string | string[] | undefined) =>
    v === undefined
      ? []
      : String(v)
          .split(',')
          .map((t) => t.trim().toLowerCase());

  it('HTTP/1.1: with exact origins or "*", with and without the upstream’s own Vary', async () => {
    for (const path of ['/cors/x', '/any/x']) {
      const res = await call(gw, path);
      expect(res.status).toBe(200);
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
      expect(vary(res.headers.vary)).toEqual(['origin']);
    }
    expect(vary((await call(gw, '/cors/gz')).headers.vary)).toEqual(['accept-encoding', 'origin']);
    // With an Origin, as before: origin once.
    const cors = await call(gw, '/cors/gz', { origin: 'https://a.example' });
    expect(cors.headers['access-control-allow-origin']).toBe('https://a.example');
    expect(vary(cors.headers.vary)).toEqual(['accept-encoding', 'origin']);
  });

  it('meshlet’s own answers on a cors route (a 401) carry it too; a route without cors gets none', async () => {
    const refused = await call(gw, '/private/x');
    expect(refused.status).toBe(401);
    expect(vary(refused.headers.vary)).toEqual(['origin']);
    expect(vary((await call(gw, '/plain/x')).headers.vary)).toEqual([]);
  });

  it('the same over h2c', async () => {
    const session = http2.connect(gw);
    try {
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const stream = session.request({ ':path': '/cors/gz' });
        stream.on('response', resolve);
        stream.on('error', reject);
        stream.resume();
      });
      expect(headers[':status']).toBe(200);
      expect(vary(headers.vary)).toEqual(['accept-encoding', 'origin']);
    } finally {
      session.close();
    }
  });
});
