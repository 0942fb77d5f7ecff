// Refused inbound handshakes are logged once per peer and reason at warn, not once per connection (needs /tmp/s11/tls-listener.patch in src/listener/inbound-listener.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevCa, issueLeaf } from '../../src/tls/dev-ca.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  makePki,
  metricValue,
  startInbound,
  type TestInbound,
  type TestPki,
  tlsRequest,
} from './tls-helpers.ts';

let pki: TestPki;
let app: TestUpstream;
let b: TestInbound;

beforeAll(async () => {
  pki = await makePki();
  app = await startUpstream();
  b = await startInbound(pki, { service: 'orders', appPort: app.port });
});
afterAll(async () => {
  await b?.close();
  await app?.close();
});

describe('inbound: refused handshakes in the log', () => {
  it('five connections without a certificate and three from another CA: one warning each, with peer and reason; all counted', async () => {
    const other = await createDevCa({ trustDomain: pki.trustDomain });
    const stranger = await issueLeaf({ ca: other, service: 'web', trustDomain: pki.trustDomain });
    const web = await pki.issue('web');
    const failed = (reason: string) =>
      metricValue(b.metrics, 'meshlet_tls_handshakes_total', {
        direction: 'inbound',
        result: 'failed',
        reason,
      });
    const before = { none: await failed('no_client_certificate'), untrusted: await failed('untrusted') };
    for (let i = 0; i < 5; i++)
      expect((await tlsRequest(b.port, { ca: pki.ca.certPem })).status).toBeUndefined();
    for (let i = 0; i < 3; i++) {
      const r = await tlsRequest(b.port, {
        ca: pki.ca.certPem,
        cert: stranger.certPem,
        key: stranger.keyPem,
      });
      expect(r.status).toBeUndefined();
    }
    expect(
      (await tlsRequest(b.port, { ca: pki.ca.certPem, cert: web.certPem, key: web.keyPem })).status,
    ).toBe(200);
    expect(await failed('no_client_certificate')).toBe(before.none + 5);
    expect(await failed('untrusted')).toBe(before.untrusted + 3);
    const lines = b.logs.filter((l) => l.msg === 'inbound tls handshake refused');
    expect(lines.map((l) => [l.level, l.peer, l.reason])).toEqual([
      ['warn', '127.0.0.1', 'no_client_certificate'],
      ['warn', '127.0.0.1', 'untrusted'],
    ]);
    expect(lines[1]!.detail).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });
});
