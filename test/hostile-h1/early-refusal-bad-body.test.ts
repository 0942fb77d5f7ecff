// A request meshlet refuses before reading its body, whose body then fails to parse: one answer counted, one access line.
import { describe, expect, it } from 'vitest';
import { meshletSuite } from '../helpers/meshlet-suite.ts';
import { scrapeMetrics, sampleValue } from '../helpers/metrics.ts';
import { parseReply, rawRequest } from '../helpers/raw-http.ts';
import { ONE_FAILURE_TRIPS } from '../helpers/one-failure-trips.ts';

/** A chunked body whose second chunk size is not hex: node:http fails to parse it (400, connection closed). */
const BAD_BODY = '5\r\nhello\r\nZZ\r\nnot a chunk\r\n';

/** `meshlet_requests_total{direction="outbound",upstream,status_class}` in a scrape. */
const requests = (text: string, upstream: string, statusClass: string) =>
  sampleValue(text, 'meshlet_requests_total', {
    direction: 'outbound',
    upstream,
    status_class: statusClass,
  });

describe('a request refused early whose body then fails to parse', () => {
  // Every answer is a 503: one opens `tripped`'s breaker.
  const suite = meshletSuite(
    (up) => ({
      registry: { type: 'static', endpoints: { parsed: [up.endpoint], tripped: [up.endpoint] } },
      upstreams: { tripped: { retries: { attempts: 1 }, ...ONE_FAILURE_TRIPS } },
      accessLog: { enabled: true, sampleRate: 1 },
    }),
    (req, res) => {
      req.resume();
      res.statusCode = 503;
      res.end('down');
    },
  );

  /** Writes `head` and {@link BAD_BODY} in one write; resolves with the reply and the access lines it caused. */
  async function send(head: string) {
    const start = suite.mesh.logs.length;
    const reply = await rawRequest(suite.port, `${head}Transfer-Encoding: chunked\r\n\r\n${BAD_BODY}`, 5000);
    // Let a second line, if one were coming, be written.
    await new Promise((r) => setTimeout(r, 150));
    return { reply, lines: suite.mesh.logs.slice(start).filter((l) => l.msg === 'access') };
  }

  it('(two Host headers: 400 bad_request before admission) is one access line and one count', async () => {
    const before = await scrapeMetrics(suite.mesh.admin);
    const { reply, lines } = await send('POST /two-hosts HTTP/1.1\r\nHost: parsed\r\nHost: parsed\r\n');
    expect(parseReply(reply).status).toBe(400);
    expect(reply).toContain('more than one Host header');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      path: '/two-hosts',
      upstream: 'parsed',
      status: 400,
      error: 'bad_request',
    });
    const after = await scrapeMetrics(suite.mesh.admin);
    const fourXx = (t: string) => requests(t, 'parsed', '4xx') + requests(t, 'unrouted', '4xx');
    expect(fourXx(after) - fourXx(before)).toBe(1);
    expect(suite.up.requests.some((r) => r.url === '/two-hosts')).toBe(false);
  });

  it('(breaker open: 503 circuit_open) is that one access line, not a second 400 bad_request', async () => {
    const trip = await rawRequest(
      suite.port,
      'GET /trip HTTP/1.1\r\nHost: tripped\r\nConnection: close\r\n\r\n',
    );
    expect(parseReply(trip).status).toBe(503);
    expect(parseReply(trip).headers['x-meshlet-error']).toBeUndefined();
    const before = await scrapeMetrics(suite.mesh.admin);
    const { reply, lines } = await send('POST /while-open HTTP/1.1\r\nHost: tripped\r\n');
    expect(parseReply(reply).status).toBe(503);
    expect(parseReply(reply).headers['x-meshlet-error']).toBe('circuit_open');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      path: '/while-open',
      upstream: 'tripped',
      status: 503,
      error: 'circuit_open',
    });
    const after = await scrapeMetrics(suite.mesh.admin);
    expect(requests(after, 'tripped', '5xx') - requests(before, 'tripped', '5xx')).toBe(1);
    const fourXx = (t: string) => requests(t, 'tripped', '4xx') + requests(t, 'unrouted', '4xx');
    expect(fourXx(after) - fourXx(before)).toBe(0);
    expect(suite.up.requests.some((r) => r.url === '/while-open')).toBe(false);
  });
});
