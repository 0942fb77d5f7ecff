// HTTP/2 requests the listener's HTTP/2 server refuses before the handler (Host ≠ :authority, a header block over the limit): one count and one access line on every listener, nothing to the endpoint.
import type { OutgoingHttpHeaders } from 'node:http2';
import { describe, expect, it } from 'vitest';
import {
  authorityOf,
  type ListenerName,
  measure,
  oneRefusal,
  overHttp2,
  refusalMesh,
} from './refusal-mesh.ts';

/** The refused shapes: the request head, given the listener's authority. */
const shapes: [name: string, head: (authority: string) => OutgoingHttpHeaders][] = [
  [
    'a Host header naming another authority than :authority',
    (a) => ({ ':method': 'GET', ':path': '/h', ':authority': a, host: 'evil' }),
  ],
  [
    // Over the inbound listener's 16 KiB and the gateway's 8 KiB, under node:http2's own 64 KiB.
    'a header block over the listener limit (20 KiB)',
    (a) => ({ ':method': 'GET', ':path': '/h', ':authority': a, 'x-big': 'a'.repeat(20 * 1024) }),
  ],
];

describe('HTTP/2 refusals of the listener itself are counted and logged like the handler’s', () => {
  const m = refusalMesh();
  const names: ListenerName[] = ['outbound', 'inbound', 'gateway', 'gateway-tls'];
  for (const name of names)
    for (const [shape, head] of shapes)
      it(`${name}: ${shape} → 400 bad_request, one count, one access line, nothing to the endpoint`, async () => {
        const got = await measure(m, name, () => overHttp2(m, name, head(authorityOf(name))));
        expect(got.answer).toBe('400 bad_request');
        expect(got.counters).toEqual(oneRefusal(name));
        expect(got.reached).toEqual([]);
        expect(got.access).toHaveLength(1);
        expect(got.access[0]).toMatchObject({
          direction: name === 'inbound' ? 'inbound' : 'outbound',
          method: 'GET',
          status: 400,
          error: 'bad_request',
          ...(name === 'inbound'
            ? { caller: expect.stringMatching(/\/web$/), peerSerial: expect.stringMatching(/^[0-9A-F]+$/) }
            : {}),
        });
      }, 20_000);
});
