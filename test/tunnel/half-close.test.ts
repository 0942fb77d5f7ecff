// A tunnel relays a half-close either way: the side that ended its sending still reads the other's answer, one hop or two (mTLS).
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { makePki, peerEndpoint, tlsFilesConfig } from '../tls/tls-helpers.ts';

/** A half-open TCP app: `onConn` gets each connection and what it reads until the client's FIN. */
/** Every connection the apps accepted, destroyed at the end. */
const accepted: Socket[] = [];

async function halfOpenApp(onConn: (s: Socket, received: Promise<string>) => void): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.on('error', () => undefined);
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    onConn(s, new Promise((r) => s.once('end', () => r(got))));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

/** Opens a half-open client connection to `port`, collecting what it reads until the server's FIN. */
function halfOpenClient(port: number): { socket: Socket; read: Promise<string> } {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  socket.on('error', () => undefined);
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  return { socket, read: new Promise((r) => socket.once('end', () => r(got))) };
}

const ESTABLISHED = 'HTTP/1.1 200 Connection established\r\n\r\n';

describe('tunnel half-close', () => {
  const servers: Server[] = [];
  const meshes: InProcessMeshlet[] = [];
  let upstreamGot = '';
  let farewellGot = '';
  let early: Server;
  let echo: Server;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    // Greets, half-closes at once, and keeps reading until the other side ends too.
    early = await halfOpenApp((s, received) => {
      s.end('bye-from-upstream');
      void received.then((got) => (upstreamGot = got));
    });
    // Answers only once the client has finished sending (a request-then-FIN protocol).
    echo = await halfOpenApp((s, received) => {
      void received.then((got) => s.end(`got:${got}`));
    });
    // The same as `early`, behind a peer meshlet.
    const farewell = await halfOpenApp((s, received) => {
      s.end('bye-over-mtls');
      void received.then((got) => (farewellGot = got));
    });
    servers.push(early, echo, farewell);
    const pki = await makePki();
    const b2 = await startMeshlet({
      service: { name: 'farewell', port: (farewell.address() as AddressInfo).port },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'farewell'),
    });
    const b = await startMeshlet({
      service: { name: 'remote', port: (echo.address() as AddressInfo).port },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'remote'),
    });
    const port = (s: Server): string => `127.0.0.1:${(s.address() as AddressInfo).port}`;
    mesh = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: {
        type: 'static',
        endpoints: {
          app: [port(early)],
          echo: [port(echo)],
          remote: [peerEndpoint(b)],
          farewell: [peerEndpoint(b2)],
        },
      },
    });
    meshes.push(b, b2, mesh);
  });
  afterAll(async () => {
    for (const m of meshes) await m.close();
    for (const s of accepted) s.destroy();
    for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  });

  const outboundPort = (): number => Number(new URL(mesh.outbound).port);

  it('an upstream that half-closes a CONNECT tunnel still receives what the client sends after', async () => {
    const c = halfOpenClient(outboundPort());
    c.socket.write('CONNECT app:443 HTTP/1.1\r\nHost: app:443\r\n\r\n');
    expect(await c.read).toBe(`${ESTABLISHED}bye-from-upstream`);
    c.socket.end('late-data-from-client');
    await new Promise((r) => c.socket.once('close', r));
    const t0 = performance.now();
    while (upstreamGot === '' && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
    expect(upstreamGot).toBe('late-data-from-client');
  });

  /** Sends CONNECT to `authority`, waits for the 200, then sends `text` and half-closes. */
  async function askThenHalfClose(authority: string, text: string): Promise<string> {
    const c = halfOpenClient(outboundPort());
    c.socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    const t0 = performance.now();
    while (c.socket.bytesRead < ESTABLISHED.length && performance.now() - t0 < 3000)
      await new Promise((r) => setTimeout(r, 5));
    c.socket.end(text);
    return c.read;
  }

  it("a client that half-closes after its request still reads the upstream's answer", async () => {
    expect(await askThenHalfClose('echo:80', 'question')).toBe(`${ESTABLISHED}got:question`);
  });

  it('so does one whose tunnel crosses two meshlets over mTLS (to a peer meshlet and its local app)', async () => {
    expect(await askThenHalfClose('remote:80', 'over-mtls')).toBe(`${ESTABLISHED}got:over-mtls`);
  });

  it("and a peer meshlet's app that half-closes first still receives what the client sends after", async () => {
    const c = halfOpenClient(outboundPort());
    c.socket.write('CONNECT farewell:80 HTTP/1.1\r\nHost: farewell:80\r\n\r\n');
    expect(await c.read).toBe(`${ESTABLISHED}bye-over-mtls`);
    c.socket.end('late-over-mtls');
    const t0 = performance.now();
    while (farewellGot === '' && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
    expect(farewellGot).toBe('late-over-mtls');
  });
});
