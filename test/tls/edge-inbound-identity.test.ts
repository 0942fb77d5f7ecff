// Inbound mTLS against hostile callers: certificates whose identity must not count (two SPIFFE URIs, another scheme, not yet valid, another trust domain, signed by a leaf) and identity headers a verified caller sends itself over HTTP/1.1 and HTTP/2.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueLeaf } from '../../src/tls/dev-ca.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  makePki,
  metricValue,
  startInbound,
  type TestInbound,
  type TestPki,
  tempDir,
  tlsRequest,
} from './tls-helpers.ts';

let pki: TestPki;
let app: TestUpstream;
let b: TestInbound;

beforeAll(async () => {
  pki = await makePki();
  app = await startUpstream();
  b = await startInbound(pki, { service: 'orders', appPort: app.port, allow: ['web'] });
});
afterAll(async () => {
  await b?.close();
  await app?.close();
});

/** A client certificate made with the openssl CLI: `san` as openssl writes it, signed by `issuer`. */
function opensslLeaf(dir: string, name: string, san: string, issuer: { cert: string; key: string }) {
  const cfg = join(dir, `${name}.cnf`);
  writeFileSync(
    cfg,
    `[req]\ndistinguished_name=dn\n[dn]\n[ext]\nsubjectAltName=${san}\nbasicConstraints=critical,CA:FALSE\n` +
      'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth,serverAuth\n',
  );
  const [key, csr, crt] = ['key', 'csr', 'crt'].map((x) => join(dir, `${name}.${x}`)) as [
    string,
    string,
    string,
  ];
  const quiet = { stdio: 'ignore' as const };
  execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], quiet);
  execFileSync(
    'openssl',
    ['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', csr, '-config', cfg],
    quiet,
  );
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      issuer.cert,
      '-CAkey',
      issuer.key,
      '-set_serial',
      '7',
      '-days',
      '1',
    ].concat(['-extfile', cfg, '-extensions', 'ext', '-out', crt]),
    quiet,
  );
  return { cert: readFileSync(crt, 'utf8'), key: readFileSync(key, 'utf8') };
}

describe('inbound: certificates that chain but name no acceptable identity', () => {
  it('are closed at the handshake, counted by reason; the app sees nothing', async () => {
    const dir = tempDir();
    const ca = { cert: join(dir, 'ca.pem'), key: join(dir, 'ca.key') };
    writeFileSync(ca.cert, pki.ca.certPem);
    writeFileSync(ca.key, pki.ca.keyPem);
    const td = pki.trustDomain;
    const web = await pki.issue('web');
    const webFiles = { cert: join(dir, 'web.pem'), key: join(dir, 'web.key') };
    writeFileSync(webFiles.cert, web.certPem);
    writeFileSync(webFiles.key, web.keyPem);
    const signedByLeaf = opensslLeaf(dir, 'sub', `URI:spiffe://${td}/svc/web`, webFiles);
    const cases = {
      // X.509-SVID: exactly one URI SAN, so neither identity counts.
      twoSpiffeUris: opensslLeaf(dir, 'two', `URI:spiffe://${td}/svc/web,URI:spiffe://${td}/svc/admin`, ca),
      httpsUri: opensslLeaf(dir, 'https', `URI:https://${td}/svc/web`, ca),
      uppercaseTrustDomain: opensslLeaf(dir, 'upper', `URI:spiffe://${td.toUpperCase()}/svc/web`, ca),
      notYetValid: await issueLeaf({
        ca: pki.ca,
        service: 'web',
        trustDomain: td,
        notBefore: new Date(Date.now() + 3_600_000),
      }).then((l) => ({ cert: l.certPem, key: l.keyPem })),
      otherTrustDomain: await issueLeaf({ ca: pki.ca, service: 'web', trustDomain: 'other.test' }).then(
        (l) => ({
          cert: l.certPem,
          key: l.keyPem,
        }),
      ),
      // A leaf is no CA, even with its own certificate sent along.
      leafSigned: { cert: signedByLeaf.cert + web.certPem, key: signedByLeaf.key },
    };
    const failed = (reason: string) =>
      metricValue(b.metrics, 'meshlet_tls_handshakes_total', {
        direction: 'inbound',
        result: 'failed',
        reason,
      });
    const before = {
      noIdentity: await failed('no_identity'),
      notYet: await failed('not_yet_valid'),
      foreign: await failed('foreign_trust_domain'),
    };
    const seen = app.requests.length;
    for (const [name, c] of Object.entries(cases)) {
      const r = await tlsRequest(b.port, { ca: pki.ca.certPem, cert: c.cert, key: c.key, path: `/${name}` });
      expect({ name, status: r.status }).toEqual({ name, status: undefined });
      expect(r.error).toBeDefined();
    }
    expect(app.requests.length).toBe(seen);
    expect(await failed('no_identity')).toBe(before.noIdentity + 3);
    expect(await failed('not_yet_valid')).toBe(before.notYet + 1);
    expect(await failed('foreign_trust_domain')).toBe(before.foreign + 1);
  });
});

describe('inbound: identity headers sent by a verified caller', () => {
  const spoofed = (rawHeaders: string[]) =>
    rawHeaders.filter((_, i) => i % 2 === 0 && rawHeaders[i]!.toLowerCase().startsWith('x-meshlet-peer-'))
      .length;

  it('HTTP/1.1, in any case and repeated: removed; the app gets exactly one verified copy of each', async () => {
    const web = await pki.issue('web');
    const sock = connect({
      port: b.port,
      host: '127.0.0.1',
      ca: pki.ca.certPem,
      cert: web.certPem,
      key: web.keyPem,
      checkServerIdentity: () => undefined,
      ALPNProtocols: ['http/1.1'],
    });
    await new Promise((r) => sock.once('secureConnect', r));
    const seen = app.requests.length;
    sock.write(
      'GET /h1 HTTP/1.1\r\nHost: orders\r\nX-MESHLET-PEER-IDENTITY: admin\r\nx-meshlet-peer-identity: root\r\n' +
        'X-Meshlet-Peer-Spiffe-Id: spiffe://mesh.test/svc/admin\r\nConnection: close\r\n\r\n',
    );
    let got = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (got += d));
    await new Promise((r) => sock.on('close', r));
    expect(got.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    const req = app.requests.slice(seen);
    expect(req.length).toBe(1);
    expect(spoofed(req[0]!.rawHeaders)).toBe(2);
    expect(req[0]!.headers['x-meshlet-peer-identity']).toBe('web');
    expect(req[0]!.headers['x-meshlet-peer-spiffe-id']).toBe(`spiffe://${pki.trustDomain}/svc/web`);
  });

  it('HTTP/2, repeated: removed the same way', async () => {
    const web = await pki.issue('web');
    const session = http2.connect(`https://127.0.0.1:${b.port}`, {
      ca: pki.ca.certPem,
      cert: web.certPem,
      key: web.keyPem,
      checkServerIdentity: () => undefined,
    });
    try {
      const seen = app.requests.length;
      const stream = session.request([
        ':method',
        'GET',
        ':path',
        '/h2',
        ':scheme',
        'https',
        ':authority',
        'orders',
        'x-meshlet-peer-identity',
        'admin',
        'x-meshlet-peer-identity',
        'root',
        'x-meshlet-peer-spiffe-id',
        'spiffe://mesh.test/svc/admin',
      ] as unknown as http2.OutgoingHttpHeaders);
      const status = await new Promise((resolve, reject) => {
        stream.on('response', (h) => resolve(h[':status']));
        stream.on('error', reject);
      });
      stream.resume();
      await new Promise((r) => stream.on('close', r));
      expect(status).toBe(200);
      const req = app.requests.slice(seen);
      expect(req.length).toBe(1);
      expect(spoofed(req[0]!.rawHeaders)).toBe(2);
      expect(req[0]!.headers['x-meshlet-peer-identity']).toBe('web');
    } finally {
      session.close();
    }
  });
});
