import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../telemetry/logger.ts';
import { RefusalLog } from './refusal-log.ts';

/** A logger whose JSON lines land in `logs` (pino writes synchronously to a plain Writable). */
function captureLogger() {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line));
      cb();
    },
  });
  return { logger: createLogger('info', sink), logs };
}

describe('RefusalLog', () => {
  it('warns once per peer and reason per window, then says how many it left out', () => {
    const { logger, logs } = captureLogger();
    let now = 0;
    const log = new RefusalLog(logger, { windowMs: 1000, now: () => now });
    expect(log.note('10.0.0.7', 'untrusted', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')).toBe(true);
    for (let i = 0; i < 50; i++) expect(log.note('10.0.0.7', 'untrusted')).toBe(false);
    expect(log.note('10.0.0.7', 'expired')).toBe(true); // another reason
    expect(log.note('10.0.0.8', 'untrusted')).toBe(true); // another peer
    now = 1000;
    expect(log.note('10.0.0.7', 'untrusted')).toBe(true);
    expect(logs.map((l) => [l.level, l.msg, l.peer, l.reason, l.detail, l.suppressed])).toEqual([
      [
        'warn',
        'inbound tls handshake refused',
        '10.0.0.7',
        'untrusted',
        'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
        undefined,
      ],
      ['warn', 'inbound tls handshake refused', '10.0.0.7', 'expired', undefined, undefined],
      ['warn', 'inbound tls handshake refused', '10.0.0.8', 'untrusted', undefined, undefined],
      ['warn', 'inbound tls handshake refused', '10.0.0.7', 'untrusted', undefined, 50],
    ]);
  });

  it('remembers at most maxKeys pairs: the oldest is forgotten, so memory stays bounded under a scan', () => {
    const { logger, logs } = captureLogger();
    const log = new RefusalLog(logger, { maxKeys: 3, now: () => 0 });
    for (let i = 0; i < 1000; i++) log.note(`10.0.${i >> 8}.${i & 255}`, 'not_tls');
    expect(logs.length).toBe(1000);
    // The first address was forgotten long ago: it is logged again, the last one is not.
    expect(log.note('10.0.0.0', 'not_tls')).toBe(true);
    expect(log.note('10.0.3.231', 'not_tls')).toBe(false);
    expect(log.note(undefined, 'reset')).toBe(true);
    expect(logs.at(-1)?.peer).toBe('unknown');
  });

  it('record: any key and fields under its own msg, e.g. callers refused by authorization per SPIFFE ID and reason', () => {
    const { logger, logs } = captureLogger();
    let now = 0;
    const log = new RefusalLog(logger, { msg: 'inbound caller refused', windowMs: 1000, now: () => now });
    const web = { caller: 'spiffe://mesh.test/svc/web', peer: '10.0.0.7', reason: 'not_allowed' };
    expect(log.record(`${web.caller} not_allowed`, web)).toBe(true);
    for (let i = 0; i < 7; i++) expect(log.record(`${web.caller} not_allowed`, web)).toBe(false);
    expect(log.record(`${web.caller} intention_denied`, { ...web, reason: 'intention_denied' })).toBe(true);
    now = 999;
    expect(log.record(`${web.caller} not_allowed`, web)).toBe(false);
    now = 1000;
    expect(log.record(`${web.caller} not_allowed`, web)).toBe(true);
    expect(logs.map((l) => [l.level, l.msg, l.caller, l.reason, l.suppressed])).toEqual([
      ['warn', 'inbound caller refused', web.caller, 'not_allowed', undefined],
      ['warn', 'inbound caller refused', web.caller, 'intention_denied', undefined],
      ['warn', 'inbound caller refused', web.caller, 'not_allowed', 8],
    ]);
  });
});
