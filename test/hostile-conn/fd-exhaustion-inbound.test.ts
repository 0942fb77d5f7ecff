// Out of file descriptors on the inbound side: a peer's request (to an HTTP/1.1 or an HTTP/2 local app) and a peer's tunnel get 503 overloaded, never reach the app, and are served again after.
import { readFileSync } from 'node:fs';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../src/config/schema.ts';
import type { MeshletProcess } from '../helpers/meshlet.ts';
import { collectReply, replyComplete } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { metric, requestOn } from './conn-helpers.ts';
import {
  fdWarnings,
  floodUntilExhausted,
  type H2App,
  killLimited,
  spawnLimited,
  startH2App,
} from './fd-flood.ts';

/** A WebSocket handshake for the local app `orders`. */
const UPGRADE =
  'GET /ws HTTP/1.1\r\nhost: orders\r\nconnection: Upgrade\r\nupgrade: websocket\r\n' +
  'sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

/** An mTLS connection (HTTP/1.1 by ALPN) to the inbound listener on `port` as service `web`. */
async function callerConnection(
  pki: TestPki,
  port: number,
  leaf: { cert: string; key: string },
): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca: readFileSync(pki.caFile),
      cert: readFileSync(leaf.cert),
      key: readFileSync(leaf.key),
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no mTLS connection within 3 s'));
    }, 3000);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** The ports a spawned meshlet logged in `meshlet started`. */
function startedPorts(m: MeshletProcess): { outbound: number; inbound: number } {
  const line = JSON.parse(m.stdout.find((l) => l.includes('"msg":"meshlet started"'))!) as {
    outbound: { port: number };
    inbound: { port: number };
  };
  return { outbound: line.outbound.port, inbound: line.inbound.port };
}

for (const protocol of ['http1', 'http2'] as const) {
  describe(`file descriptors exhausted (EMFILE) on the inbound side, ${protocol} local app`, () => {
    let pki: TestPki;
    let h1App: TestUpstream | undefined;
    let h2App: H2App | undefined;
    let appRequests: () => number;
    let m: MeshletProcess;
    let pid: number;
    let web: { cert: string; key: string };
    beforeAll(async () => {
      pki = await makePki();
      web = await pki.write('web');
      let appPort: number;
      if (protocol === 'http1') {
        const app = await startUpstream();
        h1App = app;
        appPort = app.port;
        appRequests = () => app.requests.length;
      } else {
        const app = await startH2App('h2 app');
        h2App = app;
        appPort = app.port;
        appRequests = app.requests;
      }
      const config: ConfigInput = {
        service: { name: 'orders', port: appPort, protocol },
        tls: await tlsFilesConfig(pki, 'orders'),
        listeners: {
          inbound: { address: '127.0.0.1', port: 0, allow: ['web'] },
          adminGrpc: { enabled: false },
        },
      };
      ({ m, pid } = await spawnLimited(config));
    }, 30_000);
    afterAll(async () => {
      await killLimited(m);
      await h1App?.close();
      await h2App?.close();
    });

    const what = protocol === 'http1' ? 'requests and a tunnel' : 'requests';
    it(`answers a peer's ${what} 503 overloaded, sends the app nothing, then serves again`, async () => {
      const ports = startedPorts(m);
      // Held before the flood: the caller's mTLS connections already have their descriptors.
      const held = await callerConnection(pki, ports.inbound, web);
      const heldForTunnel = await callerConnection(pki, ports.inbound, web);
      // No connection to the local app is open yet: each request needs one.
      const release = await floodUntilExhausted(ports.outbound, pid);
      try {
        for (let i = 0; i < 2; i++) {
          const reply = await requestOn(held, 'orders', `/during-${i}`);
          expect(reply).toMatch(/^HTTP\/1\.1 503 /);
          expect(reply).toContain('x-meshlet-error: overloaded');
          expect(reply).toContain('out of file descriptors');
        }
        // The requests' refusals warn once (at most once per 10 s).
        expect(fdWarnings(m)).toHaveLength(1);
        if (protocol === 'http1') {
          const collected = collectReply(heldForTunnel, { timeoutMs: 5000, until: replyComplete });
          heldForTunnel.write(UPGRADE);
          const tunnelReply = (await collected).text;
          expect(tunnelReply).toMatch(/^HTTP\/1\.1 503 /);
          expect(tunnelReply).toContain('x-meshlet-error: overloaded');
          expect(tunnelReply).toContain('out of file descriptors');
        }
      } finally {
        held.destroy();
        heldForTunnel.destroy();
        await release();
      }
      expect(appRequests()).toBe(0);

      const again = await callerConnection(pki, ports.inbound, web);
      try {
        expect(await requestOn(again, 'orders', '/after')).toMatch(/^HTTP\/1\.1 200 /);
      } finally {
        again.destroy();
      }
      expect(appRequests()).toBe(1);
      const labels = { direction: 'inbound', upstream: 'orders', code: 'overloaded' };
      // The refused tunnel is a local reply too (http1), as on the outbound side.
      expect(await metric(m.admin, 'meshlet_local_replies_total', labels)).toBe(protocol === 'http1' ? 3 : 2);
      // One warning for requests and tunnel alike (once per 10 s; the access lines carry each refusal).
      const warnings = fdWarnings(m);
      expect(warnings).toHaveLength(1);
      expect(JSON.parse(warnings[0]!)).toMatchObject({ level: 'warn', code: 'EMFILE', upstream: 'orders' });
    }, 30_000);
  });
}
