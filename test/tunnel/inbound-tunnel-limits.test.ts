// Inbound tunnels are admitted like requests: a slot of listeners.inbound.maxConcurrent for their whole life, and a token of the caller's rate limit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { plain, startRawApp, UPGRADE_TCP, until } from './raw-tunnel-helpers.ts';

describe('inbound tunnels under the inbound listener’s limits', () => {
  let pki: TestPki;
  let app: Awaited<ReturnType<typeof startRawApp>>;
  let single: InProcessMeshlet;
  let metered: InProcessMeshlet;
  let a: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    pki = await makePki();
    app = await startRawApp();
    const peer = async (name: string, inbound: Record<string, unknown>) =>
      startMeshlet({
        service: { name, port: app.port },
        listeners: {
          inbound: { address: '127.0.0.1', port: 0, allow: ['web'], ...inbound },
          adminGrpc: { enabled: false },
        },
        tls: await tlsFilesConfig(pki, name),
        shutdown: { drainDelay: 0, drainTimeout: '1s' },
      });
    single = await peer('single', { maxConcurrent: 1 });
    metered = await peer('metered', { rateLimit: { perSecond: 0.01, burst: 1 } });
    a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: {
        type: 'static',
        endpoints: { single: [peerEndpoint(single)], metered: [peerEndpoint(metered)] },
      },
      upstreams: {
        single: { upgrades: ['tcp'] },
        metered: { upgrades: ['tcp'] },
      },
      listeners: { adminGrpc: { enabled: false } },
    });
    port = Number(new URL(a.outbound).port);
  });
  afterAll(async () => {
    await a?.close();
    await single?.close();
    await metered?.close();
    await app?.close();
  });

  it('an open tunnel holds the one slot: a second tunnel gets 503 overloaded until it closes', async () => {
    const first = plain(port, `GET /t/1 HTTP/1.1\r\nHost: single\r\n${UPGRADE_TCP}`);
    await until(() => first.text().startsWith('HTTP/1.1 101'), 'the first tunnel');
    const second = plain(port, `GET /t/2 HTTP/1.1\r\nHost: single\r\n${UPGRADE_TCP}`);
    await second.ended;
    expect(second.text()).toMatch(/^HTTP\/1\.1 503/);
    expect(second.text()).toContain('overloaded');
    first.socket.end();
    await first.ended;
    // The slot is back once the tunnel ended.
    const third = plain(port, `GET /t/3 HTTP/1.1\r\nHost: single\r\n${UPGRADE_TCP}`);
    await until(() => third.text().startsWith('HTTP/1.1 101'), 'the third tunnel');
    third.socket.end();
    await third.ended;
    const denied = await (await fetch(`${single.admin}/metrics`)).text();
    expect(denied).toMatch(/meshlet_inbound_denied_total\{caller="web",reason="overloaded"[^}]*\} 1/);
  });

  it('a refused tunnel gives its slot back at once', async () => {
    const refused = plain(port, `GET /refuse/x HTTP/1.1\r\nHost: single\r\n${UPGRADE_TCP}`);
    await refused.ended;
    expect(refused.text()).toMatch(/^HTTP\/1\.1 403/);
    const next = plain(port, `GET /t/4 HTTP/1.1\r\nHost: single\r\n${UPGRADE_TCP}`);
    await until(() => next.text().startsWith('HTTP/1.1 101'), 'the next tunnel');
    next.socket.end();
    await next.ended;
  });

  it('a tunnel takes a token of the caller’s rate limit: the next one is 429 rate_limited', async () => {
    const first = plain(port, `GET /m/1 HTTP/1.1\r\nHost: metered\r\n${UPGRADE_TCP}`);
    await until(() => first.text().startsWith('HTTP/1.1 101'), 'the first tunnel');
    first.socket.end();
    await first.ended;
    const second = plain(port, `GET /m/2 HTTP/1.1\r\nHost: metered\r\n${UPGRADE_TCP}`);
    await second.ended;
    expect(second.text()).toMatch(/^HTTP\/1\.1 429/);
    expect(second.text()).toContain('rate_limited');
  });
});
