// Interim (1xx) answers from an endpoint: 103 Early Hints reaches the client before the final answer, others are dropped; none breaks the request.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, type RawEndpoint, rawRequest, startRawEndpoint } from '../helpers/raw-http.ts';

/** A raw upstream that answers every request head with `interim` and then `200 hello`. */
const rawUpstream = (interim: string): Promise<RawEndpoint> =>
  startRawEndpoint(`${interim}HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello`);

describe('interim answers from an endpoint', () => {
  let hints: RawEndpoint;
  let processing: RawEndpoint;
  let mesh: InProcessMeshlet;
  let port: number;

  beforeAll(async () => {
    hints = await rawUpstream('HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload; as=style\r\n\r\n');
    processing = await rawUpstream('HTTP/1.1 102 Processing\r\n\r\n');
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { hints: [hints.endpoint], slow: [processing.endpoint] } },
      accessLog: { enabled: false },
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh.close();
    for (const u of [hints, processing]) await u.close();
  });

  it('103 Early Hints goes to the client with its link header, then the final 200 and its body', async () => {
    const raw = await rawRequest(port, 'GET /page HTTP/1.1\r\nHost: hints\r\nConnection: close\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 103 Early Hints\r\n')).toBe(true);
    const early = raw.slice(0, raw.indexOf('\r\n\r\n'));
    expect(early.toLowerCase()).toContain('link: </app.css>; rel=preload; as=style');
    const final = parseReply(raw.slice(raw.indexOf('\r\n\r\n') + 4));
    expect(final.status).toBe(200);
    expect(final.body).toBe('hello');
  });

  it('102 Processing is dropped: the client gets the 200 alone, counted once as a response', async () => {
    for (let i = 0; i < 3; i++) {
      const raw = await rawRequest(port, 'GET /work HTTP/1.1\r\nHost: slow\r\nConnection: close\r\n\r\n');
      expect(raw.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
      expect(parseReply(raw).body).toBe('hello');
    }
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_upstream_attempts_total\{upstream="slow",result="response"\} 3$/m);
    expect(metrics).not.toMatch(/^meshlet_upstream_attempts_total\{upstream="slow",result="reset"\}/m);
    expect(metrics).toMatch(
      /^meshlet_requests_total\{direction="outbound",upstream="slow",status_class="2xx"\} 3$/m,
    );
  });
});
