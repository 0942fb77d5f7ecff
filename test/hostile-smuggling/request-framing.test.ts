// Requests whose framing or routing meshlet would change on the way (a transfer coding it drops, Transfer-Encoding on HTTP/1.0, Connection naming Host or Content-Length) are refused with 400 on every listener; the endpoint is sent nothing.
import { describe, expect, it } from 'vitest';
import { exchange, listeners, smugglingMesh } from './smuggling-mesh.ts';

/** A request any listener would route to the recording endpoint, sent after the one under test on the same connection. */
const follower = (host: string) => `GET /follower HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

/** Rows: a request head (with `HOST` for the listener's authority) and its body; each is refused with 400 bad_request. */
const refused: { name: string; head: string; body: string; reason: RegExp }[] = [
  {
    name: 'Transfer-Encoding: gzip, chunked (the gzip coding would be dropped)',
    head: 'POST /gz HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: gzip, chunked\r\n',
    body: '3\r\nabc\r\n0\r\n\r\n',
    reason: /Transfer-Encoding \\"gzip, chunked\\" is not supported/,
  },
  {
    name: 'Transfer-Encoding: identity, chunked',
    head: 'POST /id HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: identity, chunked\r\n',
    body: '3\r\nabc\r\n0\r\n\r\n',
    reason: /not supported/,
  },
  {
    name: 'two Transfer-Encoding fields, identity then chunked',
    head: 'POST /two-te HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n',
    body: '3\r\nabc\r\n0\r\n\r\n',
    reason: /not supported/,
  },
  {
    name: 'Transfer-Encoding in an HTTP/1.0 request kept alive',
    head: 'POST /te-10 HTTP/1.0\r\nHost: HOST\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n',
    body: '3\r\nabc\r\n0\r\n\r\n',
    reason: /HTTP\/1\.0 request carries Transfer-Encoding/,
  },
  {
    name: 'Connection: host (the endpoint would get its own address as Host)',
    head: 'GET /conn-host HTTP/1.1\r\nHost: HOST\r\nConnection: host\r\n',
    body: '',
    reason: /Connection header names host/,
  },
  {
    name: 'Connection: close, content-length',
    head: 'POST /conn-cl HTTP/1.1\r\nHost: HOST\r\nConnection: close, content-length\r\nContent-Length: 3\r\n',
    body: 'abc',
    reason: /Connection header names content-length/,
  },
];

describe('requests meshlet would forward with other framing or routing than it judged', () => {
  const mesh = smugglingMesh();

  for (const listener of listeners(mesh))
    for (const row of refused)
      it(`${listener.name}: ${row.name} → 400 bad_request; nothing reaches the endpoint, not even a request pipelined behind it`, async () => {
        const head = row.head.replace('HOST', listener.host);
        const out = await exchange(mesh, listener, `${head}\r\n${row.body}${follower(listener.host)}`);
        // The request under test gets meshlet's 400; the follower, if node:http reads it at all after
        // a `connection: close` request, is refused as well (HPE_CLOSED_CONNECTION), never forwarded.
        expect(out.statuses[0]).toBe(400);
        expect(out.statuses.every((s) => s === 400)).toBe(true);
        expect(out.reply).toContain('x-meshlet-error: bad_request');
        expect(out.reply).not.toMatch(/x-meshlet-attempts: [1-9]/);
        expect(out.reply).toMatch(row.reason);
        expect(out.reached).toEqual([]);
        expect(out.malformed).toEqual([]);
      });

  for (const listener of listeners(mesh))
    it(`${listener.name}: a chunked body whose coding is written Chunked, after a tab, or with Connection naming other fields still reaches the endpoint as one request with a Content-Length`, async () => {
      for (const te of ['Chunked', '\tchunked', ' chunked']) {
        const out = await exchange(
          mesh,
          listener,
          `POST /ok HTTP/1.1\r\nHost: ${listener.host}\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nTransfer-Encoding:${te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
        );
        expect(out.statuses).toEqual([200]);
        expect(out.malformed).toEqual([]);
        expect(out.reached).toHaveLength(1);
        const [seen] = out.reached;
        expect(seen!.line).toBe('POST /ok HTTP/1.1');
        expect(seen!.body).toBe('abc');
        const names = seen!.fields.map(([n]) => n.toLowerCase());
        expect(names).toContain('content-length');
        expect(names).not.toContain('transfer-encoding');
        expect(names).not.toContain('x-hop');
        expect(seen!.fields.find(([n]) => n.toLowerCase() === 'host')?.[1]).toBe(listener.host);
      }
    });
});
