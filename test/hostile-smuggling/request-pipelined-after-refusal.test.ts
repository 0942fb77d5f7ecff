// A request pipelined behind an answer that closes the connection is never forwarded: over TLS (the inbound listener) the socket is still open when that answer finishes.
import { describe, expect, it } from 'vitest';
import { exchange, listeners, smugglingMesh } from './smuggling-mesh.ts';

describe('requests pipelined behind a refusal that closes the connection', () => {
  const mesh = smugglingMesh();

  for (const listener of listeners(mesh))
    it(`${listener.name}: two Host headers get 400 with connection: close; the GET pipelined behind never reaches the endpoint`, async () => {
      const refused = `GET /two-hosts HTTP/1.1\r\nHost: ${listener.host}\r\nHost: ${listener.host}\r\n\r\n`;
      const follower = `GET /after-refusal HTTP/1.1\r\nHost: ${listener.host}\r\n\r\n`;
      const out = await exchange(mesh, listener, refused + follower);
      expect(out.statuses).toEqual([400]);
      expect(out.reply).toContain('connection: close');
      expect(out.reply).toContain('more than one Host header');
      expect(out.reached).toEqual([]);
      // The same follower on its own connection does reach it: the listener and endpoint work.
      const alone = await exchange(mesh, listener, follower);
      expect(alone.statuses).toEqual([200]);
      expect(alone.reached.map((r) => r.line)).toEqual(['GET /after-refusal HTTP/1.1']);
    });

  for (const listener of listeners(mesh))
    it(`${listener.name}: an HTTP/1.1 request without Host gets meshlet's own 400 bad_request; the GET pipelined behind never reaches the endpoint`, async () => {
      const follower = `GET /after-no-host HTTP/1.1\r\nHost: ${listener.host}\r\n\r\n`;
      const out = await exchange(mesh, listener, `GET /no-host HTTP/1.1\r\n\r\n${follower}`);
      expect(out.reached.map((r) => r.line)).toEqual([]);
      expect(out.statuses).toEqual([400]);
      expect(out.reply).toContain('x-meshlet-error: bad_request');
      expect(out.reply).toContain('must carry a Host header');
      expect(out.reply).toContain('connection: close');
    });
});
