// A request line naming another HTTP version (`GET / HTTP/2.0`) on an HTTP/1.1 connection gets 400 on every listener, and the daemon stays up.
import { connect as tlsConnect } from 'node:tls';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MeshletProcess, spawnMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { closedPort, startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, startInbound, type TestInbound } from '../tls/tls-helpers.ts';

const LINES = [
  'GET / HTTP/2.0\r\nHost: app\r\n\r\n',
  'POST / HTTP/2.0\r\nHost: app\r\nContent-Type: application/grpc\r\nContent-Length: 5\r\n\r\n\0\0\0\0\0',
  'GET http://app/x HTTP/2.0\r\nHost: app\r\n\r\n',
  'GET / HTTP/0.9\r\nHost: app\r\n\r\n',
];

function expectRefused(reply: string): void {
  const parsed = parseReply(reply);
  expect(parsed.status).toBe(400);
  expect(parsed.headers['x-meshlet-error']).toBe('bad_request');
  expect(parsed.body).toContain('is not spoken on an HTTP/1.1 connection');
}

describe('request lines of another HTTP version', () => {
  let app: TestUpstream;
  let mesh: MeshletProcess;
  let gatewayPort: number;
  let inbound: TestInbound;
  let ca: string;
  let web: { certPem: string; keyPem: string };

  beforeAll(async () => {
    app = await startUpstream();
    gatewayPort = await closedPort();
    mesh = await spawnMeshlet({
      registry: { type: 'static', endpoints: { app: [app.endpoint] } },
      listeners: { gateway: { address: '127.0.0.1', port: gatewayPort }, adminGrpc: { enabled: false } },
      gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'app' }] },
      accessLog: { enabled: false },
    });
    const pki = await makePki();
    inbound = await startInbound(pki, { service: 'app', appPort: app.port });
    web = await pki.issue('web');
    ca = pki.ca.certPem;
  });
  afterAll(async () => {
    mesh?.proc.kill('SIGKILL');
    await inbound?.close();
    await app?.close();
  });

  it('the outbound, gateway and admin listeners answer 400 bad_request, and the daemon stays up', async () => {
    const ports = [Number(new URL(mesh.outbound).port), gatewayPort, Number(new URL(mesh.admin).port)];
    for (const port of ports) for (const line of LINES) expectRefused(await rawRequest(port, line));
    expect(app.requests).toHaveLength(0);
    expect((await request(`${mesh.admin}/live`)).statusCode).toBe(200);
    expect(mesh.proc.exitCode).toBeNull();
    // An ordinary request still works.
    expect((await request(`${mesh.outbound}/`, { headers: { host: 'app' } })).statusCode).toBe(200);
  });

  it('so does the inbound mTLS listener', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({
        port: inbound.port,
        host: '127.0.0.1',
        ca,
        cert: web.certPem,
        key: web.keyPem,
        ALPNProtocols: ['http/1.1'],
        checkServerIdentity: () => undefined,
      });
      let got = '';
      socket.on('secureConnect', () => socket.write(LINES[0]!));
      socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
      socket.on('end', () => resolve(got));
      socket.on('error', reject);
    });
    expectRefused(reply);
  });
});
