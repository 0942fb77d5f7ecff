// HTTP/1.1 requests the gateway listener's parser refuses (a byte outside ASCII in the target, a malformed or oversized head): one count and one access line, as on the outbound listener, nothing to the endpoint.
import { describe, expect, it } from 'vitest';
import { type ListenerName, measure, oneRefusal, overHttp1, refusalMesh } from './refusal-mesh.ts';

/** The refused heads, as written on the wire (latin1). */
const shapes: [name: string, text: string][] = [
  ['byte 0xE9 in the target', 'GET /caf\xe9 HTTP/1.1\r\nHost: users\r\n\r\n'],
  ['a header line without a colon', 'GET /h HTTP/1.1\r\nHost: users\r\nno-colon-here\r\n\r\n'],
  [
    'a head over maxHeaderSize (20 KiB)',
    `GET /h HTTP/1.1\r\nHost: users\r\nx-big: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
  ],
];

describe('HTTP/1.1 parser refusals on the gateway are counted and logged as on the outbound listener', () => {
  const m = refusalMesh();
  const names: ListenerName[] = ['outbound', 'gateway', 'gateway-tls'];
  for (const name of names)
    for (const [shape, text] of shapes)
      it(`${name}: ${shape} → 400 bad_request, one count, one access line, nothing to the endpoint`, async () => {
        const got = await measure(m, name, () => overHttp1(m, name, text));
        expect(got.answer).toBe('400 bad_request');
        expect(got.counters).toEqual(oneRefusal(name));
        expect(got.reached).toEqual([]);
        expect(got.access).toHaveLength(1);
        expect(got.access[0]).toMatchObject({ direction: 'outbound', status: 400, error: 'bad_request' });
      }, 20_000);
});
