// Inbound listener: an absolute-form target reaches the local app in origin form, with the URL's authority as its only Host (RFC 9112 §3.2.2).
import { describe, expect, it } from 'vitest';
import { exchange, listeners, smugglingMesh } from './smuggling-mesh.ts';

describe('inbound listener: absolute-form request targets', () => {
  const mesh = smugglingMesh();
  const inbound = () => listeners(mesh).find((l) => l.name === 'inbound')!;
  const hosts = (fields: [string, string][]) =>
    fields.filter(([n]) => n.toLowerCase() === 'host').map(([, v]) => v);

  it('GET http://orders/p with Host: evil reaches the app as GET /p with Host: orders only', async () => {
    const out = await exchange(mesh, inbound(), 'GET http://orders/p HTTP/1.1\r\nHost: evil\r\n\r\n');
    expect(out.statuses).toEqual([200]);
    expect(out.reached.map((r) => [r.line, hosts(r.fields)])).toEqual([['GET /p HTTP/1.1', ['orders']]]);
    expect(out.malformed).toEqual([]);
  });

  it('a query right after the authority keeps its query, and the port stays in Host', async () => {
    const out = await exchange(
      mesh,
      inbound(),
      'GET http://orders:8443?a=1 HTTP/1.1\r\nHost: orders\r\nHost-Like: x\r\n\r\n',
    );
    expect(out.statuses).toEqual([200]);
    expect(out.reached.map((r) => [r.line, hosts(r.fields)])).toEqual([
      ['GET /?a=1 HTTP/1.1', ['orders:8443']],
    ]);
  });

  it('an absolute-form WebSocket upgrade reaches the app in origin form, with the URL authority as Host', async () => {
    const out = await exchange(
      mesh,
      inbound(),
      'GET http://orders/ws HTTP/1.1\r\nHost: evil\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    // The recording endpoint answers 200 (no 101): the answer passes on.
    expect(out.statuses).toEqual([200]);
    expect(out.reached.map((r) => [r.line, hosts(r.fields)])).toEqual([['GET /ws HTTP/1.1', ['orders']]]);
  });

  it('an absolute-form target whose authority is not one (userinfo) is 400 bad_request, nothing reaches the app', async () => {
    const out = await exchange(mesh, inbound(), 'GET http://a@orders/p HTTP/1.1\r\nHost: orders\r\n\r\n');
    expect(out.statuses).toEqual([400]);
    expect(out.reply).toContain('x-meshlet-error: bad_request');
    expect(out.reached).toEqual([]);
  });
});
