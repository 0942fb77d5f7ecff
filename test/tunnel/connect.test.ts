// Issue 13: CONNECT tunnels on the outbound listener — curl and Node's fetch through HTTPS_PROXY, never an open proxy.
import { execFile } from 'node:child_process';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from 'node:net';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { makePki, type TestPki } from '../tls/tls-helpers.ts';

const run = promisify(execFile);

describe('CONNECT tunnels', () => {
  let pki: TestPki;
  let caFile: string;
  let secure: Server;
  let canary: NetServer;
  let canaryConnections = 0;
  let mesh: InProcessMeshlet;
  let proxy: string;

  beforeAll(async () => {
    pki = await makePki();
    caFile = join(pki.dir, 'trust.pem');
    writeFileSync(caFile, pki.ca.certPem);
    const leaf = await pki.issue('users');
    // An upstream that terminates TLS itself, on a port nobody would guess from "users:443".
    secure = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
      res.setHeader('content-type', 'text/plain');
      res.end(`secure hello ${req.url}`);
    });
    await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
    canary = createNetServer((s) => {
      canaryConnections++;
      s.destroy();
    });
    await new Promise<void>((r) => canary.listen(0, '127.0.0.1', r));
    mesh = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: { users: [`127.0.0.1:${(secure.address() as AddressInfo).port}`] },
      },
    });
    proxy = mesh.outbound;
  });
  afterAll(async () => {
    await mesh.close();
    secure.closeAllConnections();
    await new Promise<void>((r) => secure.close(() => r()));
    await new Promise<void>((r) => canary.close(() => r()));
  });

  it('curl -x meshlet https://users/ works: the tunnel goes to the endpoint’s registered port', async () => {
    const { stdout } = await run('curl', [
      '-sS',
      '--max-time',
      '10',
      '-x',
      proxy,
      '--cacert',
      caFile,
      'https://users/hi',
    ]);
    expect(stdout).toBe('secure hello /hi');
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(
      /^meshlet_tunnels_total\{direction="outbound",upstream="users",kind="connect",result="established"\} [1-9]/m,
    );
  });

  it("Node's fetch with NODE_USE_ENV_PROXY=1 and HTTPS_PROXY reaches the HTTPS upstream through meshlet", async () => {
    const { stdout } = await run(
      process.execPath,
      ['-e', "fetch('https://users/from-fetch').then((r) => r.text()).then((t) => process.stdout.write(t))"],
      {
        env: {
          ...process.env,
          NODE_USE_ENV_PROXY: '1',
          HTTPS_PROXY: proxy,
          NO_PROXY: '',
          NODE_EXTRA_CA_CERTS: caFile,
        },
        timeout: 15_000,
      },
    );
    expect(stdout).toBe('secure hello /from-fetch');
  });

  it('CONNECT to an address or a name that is no upstream is refused and nothing is dialled', async () => {
    const port = Number(new URL(proxy).port);
    const canaryPort = (canary.address() as AddressInfo).port;
    for (const target of [`127.0.0.1:${canaryPort}`, 'not-a-service:443', `localhost:${canaryPort}`]) {
      const reply = parseReply(
        await rawRequest(port, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`),
      );
      expect(reply.status).toBe(404);
      expect(reply.headers['x-meshlet-error']).toBe('no_route');
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(canaryConnections).toBe(0);
  });
});
