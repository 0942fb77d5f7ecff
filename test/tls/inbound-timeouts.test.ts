// The inbound listener's wait for the local app: headers within appTimeout (504), then no body gap past the idle limit (cut).
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, startInbound, type TestInbound, type TestPki, tlsRequest } from './tls-helpers.ts';

const LIMIT_MS = 300;

describe('inbound: timeouts towards the local app', () => {
  const stalled: ServerResponse[] = [];
  let pki: TestPki;
  let app: TestUpstream;
  let b: TestInbound;
  let web: { certPem: string; keyPem: string };

  beforeAll(async () => {
    pki = await makePki();
    app = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/stall') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first;');
      }
      stalled.push(res);
    });
    b = await startInbound(pki, {
      service: 'orders',
      appPort: app.port,
      allow: ['web'],
      appTimeoutMs: LIMIT_MS,
      idleTimeoutMs: LIMIT_MS,
    });
    web = await pki.issue('web');
  });
  afterAll(async () => {
    for (const res of stalled) res.destroy();
    await b?.close();
    await app?.close();
  });

  const call = (path: string) =>
    tlsRequest(b.port, { ca: pki.ca.certPem, cert: web.certPem, key: web.keyPem, path });

  it('an app that does not answer within appTimeout gets the caller a 504 upstream_timeout on time', async () => {
    const started = performance.now();
    const reply = await call('/never');
    const elapsed = performance.now() - started;
    expect(reply.status).toBe(504);
    expect(JSON.parse(reply.body!)).toMatchObject({ error: 'upstream_timeout' });
    expect(elapsed).toBeGreaterThanOrEqual(LIMIT_MS - 10);
    expect(elapsed).toBeLessThan(LIMIT_MS + 400);
  });

  it('an app whose body stops is cut after the idle limit: the caller sees a broken body, not a hang', async () => {
    const started = performance.now();
    const reply = await call('/stall');
    const elapsed = performance.now() - started;
    expect(reply.status).toBeUndefined();
    expect(reply.error).toBe('ECONNRESET');
    expect(elapsed).toBeGreaterThanOrEqual(LIMIT_MS - 10);
    expect(elapsed).toBeLessThan(LIMIT_MS + 400);
  });
});
