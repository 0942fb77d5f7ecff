// An endpoint's unsolicited 100 Continue (and a run of 1xx) before its final answer: the app gets that answer once, the endpoint is not blamed, the connection is reused.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { parseReply, type RawEndpoint, rawRequest, startRawEndpoint } from '../helpers/raw-http.ts';

const FINAL = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello';

/** Sends `requests` one after another on one connection, each after the previous answer; resolves with the answers. */
function sequential(port: number, requests: string[], timeoutMs = 5000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const answers: string[] = [];
    let buffered = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`answers so far: ${JSON.stringify(answers)}, pending: ${JSON.stringify(buffered)}`));
    }, timeoutMs);
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1');
      // Every final answer here ends with the endpoint's 5-byte body.
      while (buffered.includes('hello')) {
        const end = buffered.indexOf('hello') + 5;
        answers.push(buffered.slice(0, end));
        buffered = buffered.slice(end);
        if (answers.length === requests.length) {
          clearTimeout(timer);
          socket.destroy();
          resolve(answers);
          return;
        }
        socket.write(requests[answers.length]!);
      }
    });
    socket.write(requests[0]!);
  });
}

describe('unsolicited interim answers from an endpoint', () => {
  let continues: RawEndpoint;
  let many: RawEndpoint;
  let mesh: InProcessMeshlet;
  let port: number;
  let connections = 0;

  beforeAll(async () => {
    continues = await startRawEndpoint(`HTTP/1.1 100 Continue\r\n\r\n${FINAL}`);
    continues.server.on('connection', () => connections++);
    many = await startRawEndpoint(
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n' +
        `HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n${FINAL}`,
    );
    mesh = await startMeshlet({
      registry: { type: 'static', endpoints: { cont: [continues.endpoint], many: [many.endpoint] } },
      // One failure would eject the endpoint: a 100 taken for a reset would show.
      upstreams: { cont: { outlierDetection: { consecutiveGatewayFailure: 1, consecutive5xx: 1 } } },
      accessLog: { enabled: false },
    });
    port = Number(new URL(mesh.outbound).port);
  });
  afterAll(async () => {
    await mesh.close();
    for (const e of [continues, many]) await e.close();
  });

  it('a 100 nobody asked for is dropped: three requests on one connection get the 200 each, over one endpoint connection', async () => {
    const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: cont\r\n\r\n`;
    const post = 'POST /form HTTP/1.1\r\nHost: cont\r\nContent-Length: 3\r\n\r\nabc';
    const answers = await sequential(port, [get('/a'), post, get('/b')]);
    for (const raw of answers) {
      expect(raw.startsWith('HTTP/1.1 200 OK\r\n'), raw).toBe(true);
      expect(raw).not.toContain(' 100 Continue');
      expect(parseReply(raw).body).toBe('hello');
      expect(parseReply(raw).headers['x-meshlet-attempts']).toBe('1');
    }
    expect(connections).toBe(1);
    const metrics = await (await request(`${mesh.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/^meshlet_upstream_attempts_total\{upstream="cont",result="response"\} 3$/m);
    expect(metrics).not.toMatch(
      /^meshlet_upstream_attempts_total\{upstream="cont",result="(reset|timeout)"\}/m,
    );
    expect(metrics).not.toMatch(/^meshlet_outlier_ejections_total\{upstream="cont"[^}]*\} [1-9]/m);
    const state = (await (await request(`${mesh.admin}/upstreams`)).body.json()) as {
      upstreams: Record<string, { circuitBreaker: string; healthy: number }>;
    };
    expect(state.upstreams.cont).toMatchObject({ circuitBreaker: 'closed', healthy: 1 });
  });

  it('100, 102 and 103 before the 200: the client gets the 103 hint, then the 200 and its body, once', async () => {
    const raw = await rawRequest(port, 'GET /page HTTP/1.1\r\nHost: many\r\nConnection: close\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 103 Early Hints\r\n'), raw).toBe(true);
    expect(raw).not.toContain(' 100 Continue');
    expect(raw).not.toContain(' 102 Processing');
    const final = raw.slice(raw.indexOf('\r\n\r\n') + 4);
    expect(final.match(/^HTTP\/1\.1 /gm)).toHaveLength(1);
    const reply = parseReply(final);
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('hello');
  });
});
