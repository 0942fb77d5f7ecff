// Every listener (outbound, gateway, mTLS inbound): a Host that is not an RFC 3986 authority is 400 bad_request and reaches no endpoint; valid forms still pass.
import { describe, expect, it } from 'vitest';
import { exchange, listeners, smugglingMesh } from './smuggling-mesh.ts';

/** Host values that are not `host[:port]`; `HOST` stands for the listener's authority. */
const invalid = [
  'us ers',
  'HOST x',
  'a@HOST',
  'HOST/x',
  'HOST:80:80',
  'HOST:8o',
  'HOST%zz',
  '[::1',
  'HOST\\x',
  'HOST"',
];
/** Valid forms that must still reach the endpoint (all name the listener's upstream). */
const valid = ['HOST', 'HOST:80', 'HOST.service.consul'];

describe('a Host that is not an authority, on every listener', () => {
  const mesh = smugglingMesh();
  for (const listener of listeners(mesh)) {
    it(`${listener.name}: each invalid Host gets 400 bad_request and the endpoint is sent nothing`, async () => {
      for (const host of invalid) {
        const value = host.replaceAll('HOST', listener.host);
        const out = await exchange(mesh, listener, `GET /p HTTP/1.1\r\nHost: ${value}\r\n\r\n`);
        expect({
          value,
          status: out.statuses[0],
          error: /x-meshlet-error: (\S+)/.exec(out.reply)?.[1],
          reached: out.reached,
        }).toEqual({
          value,
          status: 400,
          error: 'bad_request',
          reached: [],
        });
      }
    }, 30_000);

    it(`${listener.name}: valid Host forms still reach the endpoint`, async () => {
      for (const host of valid) {
        const value = host.replaceAll('HOST', listener.host);
        const out = await exchange(mesh, listener, `GET /p HTTP/1.1\r\nHost: ${value}\r\n\r\n`);
        expect({ value, statuses: out.statuses, reached: out.reached.length }).toEqual({
          value,
          statuses: [200],
          reached: 1,
        });
      }
    }, 30_000);
  }
});
