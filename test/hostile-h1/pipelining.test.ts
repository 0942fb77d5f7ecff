// Pipelined HTTP/1.1 requests on one connection are answered one at a time, in order, with bounded buffering: one client cannot fill an upstream's concurrency limit.
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { meshletSuite } from '../helpers/meshlet-suite.ts';

const COUNT = 10_000;

describe('a pipelining flood on one connection', () => {
  let inFlight = 0;
  let mostInFlight = 0;
  const suite = meshletSuite(
    (up) => ({
      registry: { type: 'static', endpoints: { users: [up.endpoint] } },
      accessLog: { enabled: false },
    }),
    (req, res) => {
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      req.resume();
      req.on('end', () =>
        setImmediate(() => {
          inFlight--;
          res.end(req.url);
        }),
      );
    },
  );

  it(`${COUNT} requests written at once are forwarded one at a time and answered in order`, async () => {
    let text = '';
    for (let i = 0; i < COUNT; i++) text += `GET /r${i} HTTP/1.1\r\nHost: users\r\n\r\n`;
    const socket = connect(suite.port, '127.0.0.1');
    const bodies: number[] = [];
    const statuses = new Map<string, number>();
    let rest = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${bodies.length} answers within 15 s`)), 15_000);
      socket.on('data', (d: Buffer) => {
        rest += d.toString('latin1');
        for (const m of rest.matchAll(/HTTP\/1\.1 (\d{3})[^]*?\r\n\r\n(?:\/r(\d+))?/g)) {
          statuses.set(m[1]!, (statuses.get(m[1]!) ?? 0) + 1);
          if (m[2] !== undefined) bodies.push(Number(m[2]));
        }
        // Keep what may be the start of an answer not yet whole.
        const last = rest.lastIndexOf('HTTP/1.1 ');
        const whole = /\r\n\r\n\/r\d+$/.test(rest) || /\r\n\r\n\{[^]*\}$/.test(rest);
        rest = whole ? '' : rest.slice(last);
        if (bodies.length + (statuses.get('503') ?? 0) >= COUNT) {
          clearTimeout(timer);
          resolve();
        }
      });
      socket.on('error', reject);
      socket.write(text);
    });
    socket.destroy();
    expect(Object.fromEntries(statuses)).toEqual({ '200': COUNT });
    expect(bodies).toEqual(Array.from({ length: COUNT }, (_, i) => i));
    // One connection, one request at the endpoint at a time (before: 1024 at once and 4,808 503s).
    expect(mostInFlight).toBe(1);
  }, 20_000);
});
