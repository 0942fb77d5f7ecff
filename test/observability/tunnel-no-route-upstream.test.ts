// A refused tunnel whose name matches no upstream logs `upstream: ""`, as an HTTP no_route and the metric label do: the name asked for is the caller's text, kept in the line's path (CONNECT) and the answer's body.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { sampleValue, scrapeMetrics } from '../helpers/metrics.ts';
import { parseReply } from '../helpers/raw-http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { accessLine, DURATION, overTcp, UUID } from './access-lines.ts';

describe('tunnel no_route refusals: upstream "" on the line and the metric label', () => {
  let up: TestUpstream;
  let m: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    up = await startUpstream();
    m = await startMeshlet({
      registry: { type: 'static', endpoints: { orders: [up.endpoint] } },
      accessLog: { enabled: false, sampleRate: 0 },
    });
    port = Number(new URL(m.outbound).port);
  });
  afterAll(async () => {
    await m?.close();
    await up?.close();
  });

  const noRoutes = (text: string) =>
    sampleValue(text, 'meshlet_local_replies_total', {
      direction: 'outbound',
      upstream: '',
      code: 'no_route',
    });

  it('a WebSocket upgrade naming an unknown upstream: line upstream "", the name only in the answer body', async () => {
    const before = await scrapeMetrics(m.admin);
    const reply = parseReply(
      await overTcp(
        port,
        'GET /ws/chat HTTP/1.1\r\nHost: asked-by-client-1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-request-id: tun-nr-1\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(404);
    expect(JSON.parse(reply.body)).toMatchObject({ error: 'no_route', upstream: 'asked-by-client-1' });
    expect(await accessLine(m, (l) => l.requestId === 'tun-nr-1')).toEqual({
      requestId: 'tun-nr-1',
      direction: 'outbound',
      kind: 'websocket',
      method: 'GET',
      path: '/ws/chat',
      upstream: '',
      endpoint: null,
      status: 404,
      attempts: 0,
      durationMs: DURATION,
      error: 'no_route',
    });
    const after = await scrapeMetrics(m.admin);
    expect(noRoutes(after) - noRoutes(before)).toBe(1);
    expect(after).not.toContain('asked-by-client-1');
  });

  it('a CONNECT naming an unknown upstream: line upstream "", the authority asked for in its path', async () => {
    const reply = parseReply(
      await overTcp(port, 'CONNECT asked-connect-1:443 HTTP/1.1\r\nHost: asked-connect-1:443\r\n\r\n'),
    );
    expect(reply.status).toBe(404);
    const id = reply.headers['x-request-id'];
    expect(id).toMatch(UUID);
    expect(await accessLine(m, (l) => l.requestId === id)).toEqual({
      requestId: id,
      direction: 'outbound',
      kind: 'connect',
      method: 'CONNECT',
      path: 'asked-connect-1:443',
      upstream: '',
      endpoint: null,
      status: 404,
      attempts: 0,
      durationMs: DURATION,
      error: 'no_route',
    });
    expect(await scrapeMetrics(m.admin)).not.toContain('asked-connect-1');
  });

  it('a path refused before routing (the Host names no upstream) does not log the Host either', async () => {
    const reply = parseReply(
      await overTcp(
        port,
        'GET /a%2Fb HTTP/1.1\r\nHost: asked-by-client-2\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-request-id: tun-path-1\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(400);
    const line = await accessLine(m, (l) => l.requestId === 'tun-path-1');
    expect(line).toMatchObject({ kind: 'websocket', upstream: '', status: 400, error: 'bad_request' });
  });

  it('a refusal after routing keeps the configured upstream it chose', async () => {
    const reply = parseReply(
      await overTcp(
        port,
        'GET /ws/h2c HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nx-request-id: tun-routed-1\r\n\r\n',
      ),
    );
    expect(reply.status).toBe(400);
    expect(await accessLine(m, (l) => l.requestId === 'tun-routed-1')).toMatchObject({
      kind: 'upgrade',
      upstream: 'orders',
      status: 400,
      error: 'bad_request',
    });
  });
});
