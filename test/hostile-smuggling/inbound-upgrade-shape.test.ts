// Inbound listener: an h2c upgrade and an upgrade with a body are refused with 400 at once, as on the outbound listener; a WebSocket upgrade still reaches the app.
import { describe, expect, it } from 'vitest';
import { exchange, listeners, smugglingMesh } from './smuggling-mesh.ts';

const ws =
  'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';

describe('inbound listener: upgrade request shapes', () => {
  const mesh = smugglingMesh();
  const inbound = () => listeners(mesh).find((l) => l.name === 'inbound')!;

  const refused: [string, string][] = [
    [
      'Upgrade: h2c',
      'GET /p HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
    ],
    [
      'Upgrade: websocket, h2c',
      'GET /p HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: websocket, H2C\r\n\r\n',
    ],
    [
      'a POST upgrade with a Content-Length body',
      `POST /p HTTP/1.1\r\nHost: orders\r\n${ws}Content-Length: 3\r\n\r\nabc`,
    ],
    [
      'a POST upgrade with a chunked body',
      `POST /p HTTP/1.1\r\nHost: orders\r\n${ws}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
    ],
  ];
  for (const [name, text] of refused) {
    it(`${name}: 400 bad_request within 1 s, nothing reaches the app`, async () => {
      const started = performance.now();
      const out = await exchange(mesh, inbound(), text);
      expect(performance.now() - started).toBeLessThan(1000);
      expect(out.statuses).toEqual([400]);
      expect(out.reply).toContain('x-meshlet-error: bad_request');
      expect(out.reached).toEqual([]);
      expect(out.malformed).toEqual([]);
    });
  }

  it('a WebSocket upgrade without a body still reaches the app (its 200 passes on)', async () => {
    const out = await exchange(mesh, inbound(), `GET /ws HTTP/1.1\r\nHost: orders\r\n${ws}\r\n`);
    expect(out.statuses).toEqual([200]);
    expect(out.reached.map((r) => r.line)).toEqual(['GET /ws HTTP/1.1']);
  });
});
