import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AccessLog, type AccessLogSettings } from './access-log.ts';
import { createLogger, type LogLevel } from './logger.ts';

function capture(level: LogLevel = 'info', settings: AccessLogSettings = { enabled: true, sampleRate: 1 }) {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger(level, stream);
  return { logger, lines, access: new AccessLog(logger, settings) };
}

/** A line without its time, keys in the order written. */
const shape = (line: string) => {
  const { time, ...rest } = JSON.parse(line) as Record<string, unknown>;
  expect(typeof time).toBe('string');
  expect(new Date(time as string).toISOString()).toBe(time);
  return Object.entries(rest);
};

const NASTY = 'a"b\\c\nd\u0001é☃\ud83d\ude00';

describe('AccessLog', () => {
  it('writes outbound lines exactly as the logger would (same keys, order, escaping)', async () => {
    const { logger, lines, access } = capture();
    access.outbound(`id-${NASTY}`, 'GET', `/p?q=${NASTY}`, 'users', '10.0.0.1:80', 200, 1, 1.234, undefined);
    logger.info({
      msg: 'access',
      requestId: `id-${NASTY}`,
      direction: 'outbound',
      method: 'GET',
      path: `/p?q=${NASTY}`,
      upstream: 'users',
      endpoint: '10.0.0.1:80',
      status: 200,
      attempts: 1,
      durationMs: 1.234,
      error: undefined,
    });
    access.outbound('r2', undefined, '/', 'users', null, 503, 0, 0.05, 'no_healthy_endpoints');
    logger.info({
      msg: 'access',
      requestId: 'r2',
      direction: 'outbound',
      method: undefined,
      path: '/',
      upstream: 'users',
      endpoint: null,
      status: 503,
      attempts: 0,
      durationMs: 0.05,
      error: 'no_healthy_endpoints',
    });
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(4);
    expect(shape(lines[0]!)).toEqual(shape(lines[1]!));
    expect(shape(lines[2]!)).toEqual(shape(lines[3]!));
  });

  it('writes inbound lines exactly as the logger would, with and without a request id', async () => {
    const { logger, lines, access } = capture();
    const caller = 'spiffe://mesh.local/svc/web';
    access.inbound('r1', caller, '0a1b', 'POST', '/x', 'users', 201, 2.5, undefined);
    logger.info({
      msg: 'access',
      requestId: 'r1',
      direction: 'inbound',
      caller,
      peerSerial: '0a1b',
      method: 'POST',
      path: '/x',
      upstream: 'users',
      status: 201,
      durationMs: 2.5,
      error: undefined,
    });
    access.inbound(undefined, caller, '0a1b', 'GET', NASTY, undefined, 403, undefined, 'forbidden');
    logger.info({
      msg: 'access',
      direction: 'inbound',
      caller,
      peerSerial: '0a1b',
      method: 'GET',
      path: NASTY,
      status: 403,
      error: 'forbidden',
    });
    await new Promise((r) => setImmediate(r));
    expect(shape(lines[0]!)).toEqual(shape(lines[1]!));
    expect(shape(lines[2]!)).toEqual(shape(lines[3]!));
  });

  it('writes a request a listener refused (no upstream chosen) exactly as the logger would, whatever the sampling', async () => {
    const { logger, lines, access } = capture('info', { enabled: false, sampleRate: 0 });
    access.refused(`GET${NASTY}`, 400, 'bad_request');
    logger.info({
      msg: 'access',
      direction: 'outbound',
      method: `GET${NASTY}`,
      upstream: '',
      endpoint: null,
      status: 400,
      attempts: 0,
      error: 'bad_request',
    });
    access.refused(undefined, 408, 'request_timeout');
    logger.info({
      msg: 'access',
      direction: 'outbound',
      method: undefined,
      upstream: '',
      endpoint: null,
      status: 408,
      attempts: 0,
      error: 'request_timeout',
    });
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(4);
    expect(shape(lines[0]!)).toEqual(shape(lines[1]!));
    expect(shape(lines[2]!)).toEqual(shape(lines[3]!));
  });

  it('writes nothing when the log level is above info', async () => {
    const { lines, access } = capture('warn');
    access.outbound('r', 'GET', '/', 'users', null, 200, 1, 1, undefined);
    access.inbound('r', 'spiffe://x/svc/y', '01', 'GET', '/', 'users', 200, 1, undefined);
    access.refused('GET', 404, 'no_route');
    await new Promise((r) => setImmediate(r));
    expect(lines).toEqual([]);
  });

  it('logs meshlet’s own answers always, others only while enabled and as sampled; a reload changes it', async () => {
    const { lines, access } = capture('info', { enabled: false, sampleRate: 1 });
    const ok = () => access.outbound('r', 'GET', '/', 'users', null, 200, 1, 1, undefined);
    const failed = () => access.outbound('r', 'GET', '/', 'users', null, 503, 1, 1, 'overloaded');
    ok();
    failed();
    access.settings = { enabled: true, sampleRate: 0 };
    ok();
    failed();
    access.settings = { enabled: true, sampleRate: 1 };
    ok();
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => (JSON.parse(l) as { status: number }).status)).toEqual([503, 503, 200]);
  });
});
