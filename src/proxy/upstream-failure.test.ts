// undici and socket errors map to failure kinds; what undici refuses to send is the request's fault.
import { describe, expect, it } from 'vitest';
import { Client, errors } from 'undici';
import { classifyFailure, errorForFailure } from './upstream-failure.ts';

describe('classifyFailure', () => {
  it('an argument undici refuses to send is the request’s fault (local), answered 400', async () => {
    // A real refusal from undici: a header value it will not write.
    const client = new Client('http://127.0.0.1:9');
    const err = await new Promise<Error>((resolve) => {
      client.dispatch(
        { path: '/', method: 'GET', headers: ['host', 'a', 'host', 'b'] },
        {
          onRequestStart() {},
          onResponseStart() {},
          onResponseData() {},
          onResponseEnd() {},
          onResponseError(_c, e) {
            resolve(e);
          },
        },
      );
    });
    await client.close();
    expect(err).toBeInstanceOf(errors.InvalidArgumentError);
    expect(classifyFailure(err, false)).toBe('local');
    const answer = errorForFailure('local', err, 'users', '127.0.0.1:9');
    expect(answer.code).toBe('bad_request');
    expect(answer.status).toBe(400);
  });

  it('connect failures, timeouts and resets keep their kinds', () => {
    const code = (c: string) => Object.assign(new Error(c), { code: c });
    expect(classifyFailure(code('ECONNREFUSED'), false)).toBe('connect');
    expect(classifyFailure(code('UND_ERR_HEADERS_TIMEOUT'), true)).toBe('timeout');
    expect(classifyFailure(code('ECONNRESET'), true)).toBe('reset');
    expect(classifyFailure(code('UND_ERR_ABORTED'), true)).toBe('aborted');
  });
});
