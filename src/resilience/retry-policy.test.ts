import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors/config-error.ts';
import {
  type AttemptOutcome,
  classify,
  DEFAULT_RETRY_ON,
  isIdempotent,
  parseRetryOn,
  RETRY_ON_CONDITIONS,
  type RetryContext,
  shouldRetry,
} from './retry-policy.ts';

const CONNECT: AttemptOutcome = { kind: 'connect-failure' };
const REFUSED: AttemptOutcome = { kind: 'refused-stream' };
const RESET: AttemptOutcome = { kind: 'reset' };
const TIMEOUT: AttemptOutcome = { kind: 'timeout' };
const status = (s: number, grpcStatus?: number): AttemptOutcome => ({
  kind: 'response',
  status: s,
  grpcStatus,
});

describe('parseRetryOn', () => {
  it('accepts every condition and status codes as numbers or digit strings', () => {
    const p = parseRetryOn([...RETRY_ON_CONDITIONS, 503, '429']);
    expect(p.conditions).toEqual(RETRY_ON_CONDITIONS);
    expect([...p.statusCodes].sort()).toEqual([429, 503]);
  });

  it('turns on retriable-status-codes when a code is listed, and orders conditions canonically', () => {
    const p = parseRetryOn(['5xx', 429, 'connect-failure', '5xx']);
    expect(p.conditions).toEqual(['connect-failure', 'retriable-status-codes', '5xx']);
  });

  it('retries nothing for an empty list', () => {
    const p = parseRetryOn([]);
    expect(p.conditions).toEqual([]);
    for (const o of [CONNECT, RESET, status(503)]) expect(classify(o, p)).toBeUndefined();
  });

  it('refuses unknown conditions and bad codes with a ConfigError naming the key and the item', () => {
    expect(() => parseRetryOn(['5xx', 'gateway_error'])).toThrow(ConfigError);
    expect(() => parseRetryOn(['gateway_error'], 'upstreams.users.retries.retryOn')).toThrow(
      /upstreams\.users\.retries\.retryOn: unknown retry condition "gateway_error"; expected one of connect-failure, .*, or a status code/,
    );
    expect(() => parseRetryOn([99])).toThrow(/99 is not an HTTP status code/);
    expect(() => parseRetryOn([503.5])).toThrow(/not an HTTP status code/);
    expect(() => parseRetryOn(['600'])).toThrow(/"600" is not an HTTP status code/);
    expect(() => parseRetryOn(['retriable-status-codes'])).toThrow(/needs at least one status code/);
  });

  it('defaults to connect failures, refused streams and gateway errors', () => {
    expect(DEFAULT_RETRY_ON.conditions).toEqual(['connect-failure', 'refused-stream', 'gateway-error']);
  });
});

describe('isIdempotent', () => {
  it('knows the idempotent methods, case-sensitively', () => {
    for (const m of ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']) expect(isIdempotent(m)).toBe(true);
    for (const m of ['POST', 'PATCH', 'CONNECT', 'get', '']) expect(isIdempotent(m)).toBe(false);
  });
});

describe('classify', () => {
  const all = parseRetryOn([...RETRY_ON_CONDITIONS, 418]);
  const only = (...items: (string | number)[]) => parseRetryOn(items);

  it('reports the most specific listed condition', () => {
    expect(classify(CONNECT, all)).toBe('connect-failure');
    expect(classify(REFUSED, all)).toBe('refused-stream');
    expect(classify(RESET, all)).toBe('reset');
    expect(classify(TIMEOUT, all)).toBe('gateway-error');
    expect(classify(status(503), all)).toBe('gateway-error');
    expect(classify(status(500), all)).toBe('5xx');
    expect(classify(status(409), all)).toBe('retriable-4xx');
    expect(classify(status(418), all)).toBe('retriable-status-codes');
    expect(classify(status(200, 14), all)).toBe('unavailable');
    expect(classify(status(200, 1), all)).toBe('cancelled');
    expect(classify(status(200, 4), all)).toBe('deadline-exceeded');
    expect(classify(status(200, 8), all)).toBe('resource-exhausted');
    expect(classify(status(200, 13), all)).toBe('internal');
  });

  it('gateway-error covers 502/503/504, timeouts and resets (Envoy counts a reset as a 503)', () => {
    const p = only('gateway-error');
    for (const o of [status(502), status(503), status(504), TIMEOUT, RESET, CONNECT, REFUSED]) {
      expect(classify(o, p)).toBe('gateway-error');
    }
    for (const o of [status(500), status(501), status(409), status(200)])
      expect(classify(o, p)).toBeUndefined();
  });

  it('5xx covers every 5xx, timeouts, connect failures and resets', () => {
    const p = only('5xx');
    for (const o of [status(500), status(599), status(503), TIMEOUT, RESET, CONNECT, REFUSED]) {
      expect(classify(o, p)).toBe('5xx');
    }
    for (const o of [status(404), status(429), status(200, 14)]) expect(classify(o, p)).toBeUndefined();
  });

  it('connect-failure and refused-stream match only themselves; reset matches every reset', () => {
    expect(classify(RESET, only('connect-failure', 'refused-stream'))).toBeUndefined();
    expect(classify(TIMEOUT, only('reset'))).toBeUndefined();
    expect(classify(CONNECT, only('reset'))).toBe('reset');
    expect(classify(REFUSED, only('reset'))).toBe('reset');
    expect(classify(status(503), only(429))).toBeUndefined();
    expect(classify(status(429), only(429))).toBe('retriable-status-codes');
    expect(classify(status(200, 99), all)).toBeUndefined();
  });
});

describe('shouldRetry', () => {
  const base = (over: Partial<RetryContext> = {}): RetryContext => ({
    outcome: CONNECT,
    method: 'POST',
    hasIdempotencyKey: false,
    requestSent: false,
    responseStarted: false,
    bodyReplayable: false,
    attempt: 1,
    maxAttempts: 3,
    retryOn: parseRetryOn(['connect-failure', 'refused-stream', 'gateway-error', 'reset']),
    ...over,
  });

  it('always retries a connect failure: nothing was sent, even a POST with a streamed body', () => {
    expect(shouldRetry(base())).toEqual({ retry: true, reason: 'connect-failure' });
  });

  it('retries a refused stream of a POST whose body can be replayed', () => {
    expect(shouldRetry(base({ outcome: REFUSED, requestSent: true, bodyReplayable: true }))).toEqual({
      retry: true,
      reason: 'refused-stream',
    });
    expect(shouldRetry(base({ outcome: REFUSED, requestSent: true }))).toEqual({
      retry: false,
      why: 'body-not-replayable',
    });
  });

  it('does not retry a POST that may have reached the app', () => {
    for (const outcome of [RESET, TIMEOUT, status(503)]) {
      expect(shouldRetry(base({ outcome, requestSent: true, bodyReplayable: true }))).toEqual({
        retry: false,
        why: 'not-idempotent',
      });
    }
  });

  it('retries a reset before any byte was sent, whatever the method', () => {
    expect(shouldRetry(base({ outcome: RESET }))).toEqual({ retry: true, reason: 'reset' });
  });

  it('retries idempotent methods and requests with an Idempotency-Key', () => {
    const sent = { outcome: status(503), requestSent: true, bodyReplayable: true };
    expect(shouldRetry(base({ ...sent, method: 'GET' }))).toEqual({ retry: true, reason: 'gateway-error' });
    expect(shouldRetry(base({ ...sent, method: 'PUT' }))).toEqual({ retry: true, reason: 'gateway-error' });
    expect(shouldRetry(base({ ...sent, hasIdempotencyKey: true }))).toEqual({
      retry: true,
      reason: 'gateway-error',
    });
  });

  it('never retries once response headers went to the client', () => {
    expect(shouldRetry(base({ responseStarted: true }))).toEqual({ retry: false, why: 'response-started' });
  });

  it('stops when attempts are exhausted', () => {
    expect(shouldRetry(base({ attempt: 3 }))).toEqual({ retry: false, why: 'attempts-exhausted' });
    expect(shouldRetry(base({ attempt: 2 })).retry).toBe(true);
    expect(shouldRetry(base({ maxAttempts: 1 }))).toEqual({ retry: false, why: 'attempts-exhausted' });
  });

  it('does not retry outcomes outside retryOn', () => {
    const ctx = base({ outcome: status(500), method: 'GET', requestSent: true, bodyReplayable: true });
    expect(shouldRetry(ctx)).toEqual({ retry: false, why: 'not-retriable' });
    expect(shouldRetry({ ...ctx, outcome: status(200) })).toEqual({ retry: false, why: 'not-retriable' });
  });

  it('does not retry a sent GET whose body cannot be replayed', () => {
    const ctx = base({ outcome: RESET, method: 'GET', requestSent: true, bodyReplayable: false });
    expect(shouldRetry(ctx)).toEqual({ retry: false, why: 'body-not-replayable' });
  });

  it('answers with shared objects (no allocation per call)', () => {
    expect(shouldRetry(base())).toBe(shouldRetry(base()));
    expect(shouldRetry(base({ attempt: 9 }))).toBe(shouldRetry(base({ attempt: 10 })));
  });
});
