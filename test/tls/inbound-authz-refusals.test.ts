// Callers refused on the inbound listener are observable without flooding: one `inbound caller refused` warning per caller and reason, counted by a bounded reason, over HTTP/1.1, HTTP/2 (gRPC) and tunnels; callers with no usable identity are refused at the handshake with a clear detail.
import * as http2 from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { consulRegistry, within } from '../consul/consul-helpers.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { CA_EXT, opensslCert } from './openssl-certs.ts';
import { makePki, type TestPki, tempDir, tlsFilesConfig, tlsRequest } from './tls-helpers.ts';

interface Leaf {
  certPem: string;
  keyPem: string;
}

/** A gRPC call over a fresh HTTP/2 mTLS connection; the response headers (trailers-only answers carry grpc-status there). */
async function grpcCall(port: number, ca: string, leaf: Leaf): Promise<http2.IncomingHttpHeaders> {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    ca,
    cert: leaf.certPem,
    key: leaf.keyPem,
    checkServerIdentity: () => undefined,
  });
  session.on('error', () => undefined);
  try {
    const stream = session.request({
      ':method': 'POST',
      ':path': '/meshlet.test.v1.Echo/Say',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no gRPC answer within 5 s')), 5000);
      stream.on('response', (h) => {
        clearTimeout(timer);
        resolve(h);
      });
      stream.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    stream.resume();
    return headers;
  } finally {
    session.destroy();
  }
}

/** Sends a raw HTTP/1.1 head over a fresh mTLS connection and returns the status line of the answer. */
function rawHead(port: number, ca: string, leaf: Leaf, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({
      port,
      host: '127.0.0.1',
      ca,
      cert: leaf.certPem,
      key: leaf.keyPem,
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no answer within 5 s'));
    }, 5000);
    let got = '';
    sock.setEncoding('utf8');
    sock.once('secureConnect', () => sock.write(head));
    sock.on('data', (d: string) => (got += d));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(got.split('\r\n')[0] ?? '');
    });
  });
}

const CONNECT_HEAD = 'CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n';
const UPGRADE_HEAD =
  'GET /chat HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

/** One HTTPS request from `localAddress` (a 127.0.0.0/8 address), presenting `leaf`; the status or the error. */
function requestFrom(port: number, ca: string, leaf: Leaf, localAddress: string): Promise<string> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        localAddress,
        ca,
        cert: leaf.certPem,
        key: leaf.keyPem,
        agent: false,
        checkServerIdentity: () => undefined,
        timeout: 5000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(`status ${res.statusCode}`));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    req.end();
  });
}

/** The value of one sample in Prometheus text, by its exact label set; 0 when absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('inbound: callers refused by the allow-list', () => {
  let pki: TestPki;
  let app: TestUpstream;
  let b: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    pki = await makePki();
    app = await startUpstream();
    b = await startMeshlet({
      service: { name: 'orders', port: app.port },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
    port = b.daemon.addresses().inbound!.port;
  });
  afterAll(async () => {
    await b?.close();
    await app?.close();
  });

  it('HTTP/1.1, gRPC over HTTP/2, CONNECT and WebSocket: each refused caller is one warning with who, from where and why, and counted by a bounded reason; the app sees nothing', async () => {
    const ca = pki.ca.certPem;
    const [billing, payments, audit, reports, web] = await Promise.all(
      ['billing', 'payments', 'audit', 'reports', 'web'].map((s) => pki.issue(s)),
    );
    const seen = app.requests.length;
    for (let i = 0; i < 5; i++) {
      const r = await tlsRequest(port, { ca, cert: billing!.certPem, key: billing!.keyPem });
      expect(r.status).toBe(403);
      expect(r.headers?.['x-meshlet-error']).toBe('forbidden');
    }
    for (let i = 0; i < 3; i++) {
      const h = await grpcCall(port, ca, payments!);
      expect([h[':status'], h['grpc-status']]).toEqual([200, '7']);
    }
    for (let i = 0; i < 2; i++) {
      expect(await rawHead(port, ca, audit!, CONNECT_HEAD)).toBe('HTTP/1.1 403 Forbidden');
      expect(await rawHead(port, ca, reports!, UPGRADE_HEAD)).toBe('HTTP/1.1 403 Forbidden');
    }
    expect((await tlsRequest(port, { ca, cert: web!.certPem, key: web!.keyPem })).status).toBe(200);
    expect(app.requests.length).toBe(seen + 1);

    const td = pki.trustDomain;
    const lines = b.logs.filter((l) => l.msg === 'inbound caller refused');
    expect(lines.map((l) => [l.level, l.caller, l.peer, l.reason, l.rule, l.via, l.suppressed])).toEqual([
      [
        'warn',
        `spiffe://${td}/svc/billing`,
        '127.0.0.1',
        'not_allowed',
        'not in listeners.inbound.allow',
        'http1',
        undefined,
      ],
      [
        'warn',
        `spiffe://${td}/svc/payments`,
        '127.0.0.1',
        'not_allowed',
        'not in listeners.inbound.allow',
        'http2',
        undefined,
      ],
      [
        'warn',
        `spiffe://${td}/svc/audit`,
        '127.0.0.1',
        'not_allowed',
        'not in listeners.inbound.allow',
        'connect',
        undefined,
      ],
      [
        'warn',
        `spiffe://${td}/svc/reports`,
        '127.0.0.1',
        'not_allowed',
        'not in listeners.inbound.allow',
        'websocket',
        undefined,
      ],
    ]);
    expect(lines[0]!.peerSerial).toBe(billing!.serialNumber);

    const text = await (await request(`${b.admin}/metrics`)).body.text();
    const denied = (caller: string) =>
      sample(text, `meshlet_inbound_denied_total{caller="${caller}",reason="forbidden",authz="not_allowed"}`);
    expect([denied('billing'), denied('payments'), denied('audit'), denied('reports')]).toEqual([5, 3, 2, 2]);
    // Bounded labels: the caller's service at most, never its SPIFFE ID or address.
    const deniedLines = text.split('\n').filter((l) => l.startsWith('meshlet_inbound_denied_total{'));
    expect(deniedLines.length).toBe(4);
    expect(deniedLines.join('\n')).not.toMatch(/spiffe:|127\.0\.0\.1/);
  });

  it('a meshlet whose caller is refused: 403 forbidden on every request, and its endpoint stays healthy, breaker closed', async () => {
    const a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'crm'),
      registry: {
        type: 'static',
        endpoints: { orders: [{ address: '127.0.0.1', port, meta: { meshlet_inbound: 'mtls' } }] },
      },
      upstreams: {
        orders: {
          circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeout: '30s' },
          outlierDetection: { consecutive5xx: 2, consecutiveGatewayFailure: 2, baseEjectionTime: '30s' },
        },
      },
    });
    try {
      const seen = app.requests.length;
      for (let i = 0; i < 12; i++) {
        const res = await request(`${a.outbound}/v1/x`, { headers: { host: 'orders' } });
        expect(res.statusCode).toBe(403);
        expect(res.headers['x-meshlet-error']).toBe('forbidden');
        await res.body.dump();
      }
      expect(app.requests.length).toBe(seen);
      const view = (await (await request(`${a.admin}/upstreams`)).body.json()) as {
        upstreams: Record<
          string,
          { healthy: number; circuitBreaker: string; endpoints: { state: string }[] }
        >;
      };
      expect(view.upstreams.orders).toMatchObject({ healthy: 1, circuitBreaker: 'closed' });
      expect(view.upstreams.orders!.endpoints.map((e) => e.state)).toEqual(['healthy']);
      const lines = b.logs.filter(
        (l) => l.msg === 'inbound caller refused' && l.caller === `spiffe://${pki.trustDomain}/svc/crm`,
      );
      expect(lines.length).toBe(1);
    } finally {
      await a.close();
    }
  });
});

describe('inbound: callers with no usable SPIFFE identity', () => {
  let pki: TestPki;
  let app: TestUpstream;
  let b: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    pki = await makePki();
    app = await startUpstream();
    b = await startMeshlet({
      service: { name: 'orders', port: app.port },
      listeners: { inbound: { address: '127.0.0.1', port: 0 } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
    port = b.daemon.addresses().inbound!.port;
  });
  afterAll(async () => {
    await b?.close();
    await app?.close();
  });

  it('no SAN, no URI SAN, two URI SANs, a non-spiffe URI: closed at the handshake, counted no_identity, logged with a detail saying which', async () => {
    const dir = tempDir();
    const ca = opensslCert(dir, 'ca', CA_EXT);
    const leafExt = (san: string) =>
      `${san}basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth`;
    const td = pki.trustDomain;
    const cases: [string, string, string][] = [
      ['127.0.0.2', leafExt(''), 'no URI SAN (no subject alternative names)'],
      ['127.0.0.3', leafExt('subjectAltName=DNS:web.example\n'), 'no URI SAN'],
      [
        '127.0.0.4',
        leafExt(`subjectAltName=URI:spiffe://${td}/svc/web,URI:spiffe://${td}/svc/admin\n`),
        '2 URI SANs (an X.509-SVID holds exactly one)',
      ],
      [
        '127.0.0.5',
        leafExt(`subjectAltName=URI:https://${td}/svc/web\n`),
        `URI SAN "https://${td}/svc/web" is not a spiffe:// ID`,
      ],
    ];
    // A meshlet trusting the openssl CA, so these certificates chain and only their identity is wrong.
    const odd = await startMeshlet({
      service: { name: 'orders', port: app.port },
      listeners: { inbound: { address: '127.0.0.1', port: 0 } },
      tls: {
        source: 'files',
        ...(() => {
          const leaf = opensslCert(
            dir,
            'orders',
            leafExt(`subjectAltName=URI:spiffe://${td}/svc/orders\n`).replace(
              'clientAuth',
              'clientAuth,serverAuth',
            ),
            ca,
          );
          return { cert: leaf.cert, key: leaf.key, ca: ca.cert };
        })(),
        trustDomain: td,
      },
    });
    try {
      const oddPort = odd.daemon.addresses().inbound!.port;
      const seen = app.requests.length;
      for (const [from, ext] of cases) {
        const leaf = opensslCert(dir, `leaf-${from}`, ext, ca);
        for (let i = 0; i < 2; i++) {
          const r = await requestFrom(oddPort, ca.certPem, leaf, from);
          expect({ from, r: r.startsWith('error') }).toEqual({ from, r: true });
        }
      }
      expect(app.requests.length).toBe(seen);
      const text = await (await request(`${odd.admin}/metrics`)).body.text();
      expect(
        sample(
          text,
          'meshlet_tls_handshakes_total{direction="inbound",result="failed",reason="no_identity"}',
        ),
      ).toBe(8);
      const lines = odd.logs.filter((l) => l.msg === 'inbound tls handshake refused');
      expect(lines.map((l) => [l.level, l.peer, l.reason, l.detail])).toEqual(
        cases.map(([from, , detail]) => ['warn', from, 'no_identity', detail]),
      );
      // They never reached authorization.
      expect(odd.logs.some((l) => l.msg === 'inbound caller refused')).toBe(false);
    } finally {
      await odd.close();
    }
  });

  it('another trust domain: refused at the handshake, the detail names both trust domains', async () => {
    const { issueLeaf } = await import('../../src/tls/dev-ca.ts');
    const foreign = await issueLeaf({ ca: pki.ca, service: 'web', trustDomain: 'other.test' });
    const r = await requestFrom(port, pki.ca.certPem, foreign, '127.0.0.6');
    expect(r.startsWith('error')).toBe(true);
    await within(2000, () => b.logs.some((l) => l.peer === '127.0.0.6'), 'the refusal logged');
    const line = b.logs.find((l) => l.msg === 'inbound tls handshake refused' && l.peer === '127.0.0.6')!;
    expect([line.reason, line.detail]).toEqual([
      'foreign_trust_domain',
      `trust domain "other.test" is not "${pki.trustDomain}"`,
    ]);
  });
});

describe('inbound: callers refused by Consul intentions', () => {
  let consul: ConsulDouble;
  let app: TestUpstream;
  let b: InProcessMeshlet;

  beforeAll(async () => {
    consul = new ConsulDouble({ jitter: false });
    await consul.start();
    app = await startUpstream();
    b = await startMeshlet({
      service: { name: 'orders', port: app.port, address: '127.0.0.1' },
      listeners: { inbound: { address: '127.0.0.1', port: 0 } },
      registry: consulRegistry(consul, { check: { interval: '1s', timeout: '500ms' } }),
      tls: { source: 'consul' },
      shutdown: { drainDelay: 0 },
    });
  });
  afterAll(async () => {
    consul?.setFailing(null);
    await b?.close();
    await app?.close();
    await consul?.stop();
  });

  it('an intention denying the caller, and an agent that cannot answer: each logged with the deciding rule and counted by reason', async () => {
    const port = b.daemon.addresses().inbound!.port;
    const ca = consul.connect.activeRoot.certPem;
    const web = await consul.connect.leaf('web');
    const crm = await consul.connect.leaf('crm');
    consul.connect.setIntentions([{ source: 'web', destination: 'orders', action: 'deny' }]);
    for (let i = 0; i < 3; i++) {
      const r = await tlsRequest(port, { ca, cert: web.certPem, key: web.keyPem });
      expect(r.status).toBe(403);
    }
    const h = await grpcCall(port, ca, web);
    expect(h['grpc-status']).toBe('7');
    consul.setFailing(500);
    try {
      const r = await tlsRequest(port, { ca, cert: crm.certPem, key: crm.keyPem });
      expect(r.status).toBe(403);
    } finally {
      consul.setFailing(null);
    }
    expect(app.requests.length).toBe(0);
    const lines = b.logs.filter((l) => l.msg === 'inbound caller refused');
    expect(lines.map((l) => [l.level, l.caller, l.reason, l.via])).toEqual([
      ['warn', web.serviceUri, 'intention_denied', 'http1'],
      ['warn', crm.serviceUri, 'authorization_unavailable', 'http1'],
    ]);
    expect(lines[0]!.rule).toBe('intentions: Matched L4 intention: web => orders (deny)');
    expect(lines[1]!.rule).toMatch(/^authorization unavailable \(Consul answered 500/);
    const text = await (await request(`${b.admin}/metrics`)).body.text();
    expect(
      sample(text, 'meshlet_inbound_denied_total{caller="web",reason="forbidden",authz="intention_denied"}'),
    ).toBe(4);
    expect(
      sample(
        text,
        'meshlet_inbound_denied_total{caller="crm",reason="forbidden",authz="authorization_unavailable"}',
      ),
    ).toBe(1);
  });
});
