// Gateway CORS: a preflight's 204 carries no content-length over HTTP/1.1 (RFC 9110 §8.6), and its connection stays usable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

describe('gateway CORS preflight 204 without content-length', () => {
  let upstream: TestUpstream;
  let m: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    m = await startMeshlet({
      listeners: { gateway: { address: '127.0.0.1', port: 0 } },
      registry: { endpoints: { users: [upstream.endpoint] } },
      gateway: {
        routes: [
          {
            match: { pathPrefix: '/cors/' },
            upstream: 'users',
            cors: { origins: ['https://a.example'], credentials: true },
          },
        ],
      },
    });
    port = m.daemon.addresses().gateway!.port;
  });
  afterAll(async () => {
    await m.close();
    await upstream.close();
  });

  it('the 204 head has neither content-length nor transfer-encoding; a request pipelined behind it is answered', async () => {
    const preflight =
      'OPTIONS /cors/x HTTP/1.1\r\nHost: gw\r\nOrigin: https://a.example\r\n' +
      'Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: x-a\r\n\r\n';
    const reply = await rawRequest(
      port,
      `${preflight}GET /cors/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n`,
    );
    const end = reply.indexOf('\r\n\r\n');
    const head = reply.slice(0, end);
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 204 No Content');
    expect(head).toMatch(/\r\naccess-control-allow-origin: https:\/\/a\.example\r\n/i);
    expect(head).toMatch(/\r\naccess-control-max-age: /i);
    expect(head).not.toMatch(/\r\ncontent-length:/i);
    expect(head).not.toMatch(/\r\ntransfer-encoding:/i);
    // No body bytes after the 204: the next thing on the wire is the GET's answer.
    const next = parseReply(reply.slice(end + 4));
    expect(reply.slice(end + 4).startsWith('HTTP/1.1 200')).toBe(true);
    expect(next.body).toBe('ok');
  });

  it('a refused origin’s preflight 204 has none either', async () => {
    const reply = await rawRequest(
      port,
      'OPTIONS /cors/x HTTP/1.1\r\nHost: gw\r\nOrigin: https://evil.example\r\n' +
        'Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n',
    );
    const head = reply.slice(0, reply.indexOf('\r\n\r\n'));
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 204 No Content');
    expect(head).not.toMatch(/access-control-allow-origin/i);
    expect(head).not.toMatch(/\r\ncontent-length:/i);
  });
});
