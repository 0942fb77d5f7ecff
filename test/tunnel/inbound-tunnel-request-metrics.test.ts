// Inbound tunnels count in the request metrics as outbound ones do: refusals as local replies, every handshake and tunnel as a request.
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { plain, type RawClient, rawClient, startRawApp, UPGRADE_TCP, until } from './raw-tunnel-helpers.ts';

/** The value of the sample of `name` whose labels include all of `labels` (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inside = line.slice(name.length + 1, line.lastIndexOf('}'));
    if (Object.entries(labels).every(([k, v]) => inside.includes(`${k}="${v}"`)))
      return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

const scrape = async (m: InProcessMeshlet): Promise<string> => (await fetch(`${m.admin}/metrics`)).text();

describe('request metrics of inbound tunnels', () => {
  let pki: TestPki;
  let app: Awaited<ReturnType<typeof startRawApp>>;
  let b: InProcessMeshlet;
  let a: InProcessMeshlet;
  let port: number;

  /** A raw client to B's inbound listener over mTLS, as `web`, `head` sent. */
  const direct = async (head: string): Promise<RawClient> => {
    const leaf = await pki.issue('web');
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: b.daemon.addresses().inbound!.port,
      cert: leaf.certPem,
      key: leaf.keyPem,
      ca: pki.ca.certPem,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    return rawClient(socket, head);
  };

  const inbound = { direction: 'inbound', upstream: 'chat' };
  const outbound = { direction: 'outbound', upstream: 'chat' };

  beforeAll(async () => {
    pki = await makePki();
    app = await startRawApp();
    b = await startMeshlet({
      service: { name: 'chat', port: app.port },
      listeners: {
        inbound: { address: '127.0.0.1', port: 0, allow: ['web'] },
        adminGrpc: { enabled: false },
      },
      tls: await tlsFilesConfig(pki, 'chat'),
      shutdown: { drainDelay: 0, drainTimeout: '1s' },
    });
    a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: { type: 'static', endpoints: { chat: [peerEndpoint(b)] } },
      upstreams: { chat: { upgrades: ['tcp'] } },
      listeners: { adminGrpc: { enabled: false } },
    });
    port = Number(new URL(a.outbound).port);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await app?.close();
  });

  it('a refused upgrade counts as a local reply and a 4xx request, as the same refused request does', async () => {
    const request = await direct('GET /r HTTP/1.1\r\nHost: chat\r\nHost: other\r\nConnection: close\r\n\r\n');
    await request.ended;
    expect(request.text()).toMatch(/^HTTP\/1\.1 400/);
    let text = await scrape(b);
    expect(sample(text, 'meshlet_local_replies_total', { ...inbound, code: 'bad_request' })).toBe(1);
    expect(sample(text, 'meshlet_requests_total', { ...inbound, status_class: '4xx' })).toBe(1);
    expect(sample(text, 'meshlet_request_duration_seconds_count', { ...inbound, status_class: '4xx' })).toBe(
      1,
    );

    const upgrade = await direct(`GET /u HTTP/1.1\r\nHost: chat\r\nHost: other\r\n${UPGRADE_TCP}`);
    await upgrade.ended;
    expect(upgrade.text()).toMatch(/^HTTP\/1\.1 400/);
    text = await scrape(b);
    expect(sample(text, 'meshlet_tunnels_total', { ...inbound, kind: 'upgrade', result: 'failed' })).toBe(1);
    expect(sample(text, 'meshlet_local_replies_total', { ...inbound, code: 'bad_request' })).toBe(2);
    expect(sample(text, 'meshlet_requests_total', { ...inbound, status_class: '4xx' })).toBe(2);
    expect(sample(text, 'meshlet_request_duration_seconds_count', { ...inbound, status_class: '4xx' })).toBe(
      2,
    );
  });

  it('an established tunnel counts as a 101 request when it ends, timed from its handshake, on both sides', async () => {
    const tunnel = plain(port, `GET /t HTTP/1.1\r\nHost: chat\r\n${UPGRADE_TCP}`);
    await until(() => tunnel.text().startsWith('HTTP/1.1 101'), 'the tunnel');
    // Open: not a finished request yet on either side.
    expect(sample(await scrape(b), 'meshlet_requests_total', { ...inbound, status_class: '1xx' })).toBe(0);
    await new Promise((r) => setTimeout(r, 400));
    tunnel.socket.end();
    await tunnel.ended;
    const labels1xx = { status_class: '1xx' };
    let inText = '';
    let outText = '';
    const t0 = performance.now();
    while (performance.now() - t0 < 4000) {
      inText = await scrape(b);
      outText = await scrape(a);
      if (
        sample(inText, 'meshlet_requests_total', { ...inbound, ...labels1xx }) > 0 &&
        sample(outText, 'meshlet_requests_total', { ...outbound, ...labels1xx }) > 0
      )
        break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(sample(outText, 'meshlet_requests_total', { ...outbound, ...labels1xx })).toBe(1);
    expect(sample(inText, 'meshlet_requests_total', { ...inbound, ...labels1xx })).toBe(1);
    const inSum = sample(inText, 'meshlet_request_duration_seconds_sum', { ...inbound, ...labels1xx });
    const outSum = sample(outText, 'meshlet_request_duration_seconds_sum', { ...outbound, ...labels1xx });
    // The tunnel's lifetime (about 0.4 s), not the handshake's milliseconds.
    expect(inSum).toBeGreaterThanOrEqual(0.35);
    expect(outSum).toBeGreaterThanOrEqual(inSum);
    // An established tunnel is no local reply.
    expect(sample(inText, 'meshlet_local_replies_total', { ...inbound, code: 'bad_request' })).toBe(2);
  });

  it('an upgrade the local app refuses counts as a request with its status, not as a local reply', async () => {
    const before = await scrape(b);
    const refused = plain(port, `GET /refuse/x HTTP/1.1\r\nHost: chat\r\n${UPGRADE_TCP}`);
    await refused.ended;
    expect(refused.text()).toMatch(/^HTTP\/1\.1 403/);
    const after = await scrape(b);
    const count = (text: string) =>
      sample(text, 'meshlet_requests_total', { ...inbound, status_class: '4xx' });
    expect(count(after) - count(before)).toBe(1);
    expect(sample(after, 'meshlet_tunnels_total', { ...inbound, kind: 'upgrade', result: 'refused' })).toBe(
      1,
    );
    expect(sample(after, 'meshlet_local_replies_total', { ...inbound, code: 'bad_request' })).toBe(2);
    expect(sample(after, 'meshlet_local_replies_total', { ...inbound, code: 'forbidden' })).toBe(0);
  });

  it('a caller that leaves during the handshake counts as a 499 request, not as a local reply', async () => {
    const count = (text: string) =>
      sample(text, 'meshlet_requests_total', { ...inbound, status_class: '4xx' });
    const before = count(await scrape(b));
    const held = plain(port, `GET /hold/x HTTP/1.1\r\nHost: chat\r\n${UPGRADE_TCP}`);
    await new Promise((r) => setTimeout(r, 300));
    held.socket.destroy();
    let after = '';
    const t0 = performance.now();
    do {
      after = await scrape(b);
      if (count(after) > before) break;
      await new Promise((r) => setTimeout(r, 20));
    } while (performance.now() - t0 < 4000);
    expect(count(after) - before).toBe(1);
    expect(sample(after, 'meshlet_tunnels_total', { ...inbound, kind: 'upgrade', result: 'failed' })).toBe(2);
    expect(sample(after, 'meshlet_local_replies_total', { ...inbound, code: 'bad_request' })).toBe(2);
  });
});
