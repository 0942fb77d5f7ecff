// The responses malformed right after their head (in the same read) that the early-malformed tests send meshlet, outbound and inbound alike.
import {
  h2Data,
  h2Headers,
  type ScriptedEndpoint,
  startH1Endpoint,
  startH2Endpoint,
} from './response-endpoints.ts';

/** One malformed response and the endpoint that sends it. */
export interface EarlyMalformed {
  /** What is wrong with it, e.g. `a negative chunk size`. */
  what: string;
  /** What the endpoint speaks. */
  protocol: 'http1' | 'http2';
  /** Starts the endpoint: it answers `/hostile` with the malformed response, anything else honestly. */
  start: () => Promise<ScriptedEndpoint>;
}

/** `HTTP/1.1` or `HTTP/2`, as the test names say it. */
export const protocolName = (protocol: 'http1' | 'http2'): string =>
  protocol === 'http1' ? 'HTTP/1.1' : 'HTTP/2';

const h1 = (bytes: string) => () => startH1Endpoint({ bytes });
const h2 = (frames: (id: number) => Buffer[]) => () => startH2Endpoint(frames);

/** Three malformed chunked HTTP/1.1 bodies, then three HTTP/2 bodies at odds with their head. */
export const EARLY_MALFORMED: readonly EarlyMalformed[] = [
  {
    what: 'a chunk size that is not hex',
    start: h1('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n'),
    protocol: 'http1',
  },
  {
    what: 'a negative chunk size',
    start: h1('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-2\r\nhi\r\n0\r\n\r\n'),
    protocol: 'http1',
  },
  {
    what: 'a chunk shorter than its data',
    start: h1('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nhi\r\n0\r\n\r\n'),
    protocol: 'http1',
  },
  {
    what: 'DATA past the content-length',
    start: h2((id) => [
      h2Headers(id, [
        [':status', '200'],
        ['content-length', '2'],
      ]),
      h2Data(id, 'hiHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nSECRET'),
    ]),
    protocol: 'http2',
  },
  {
    what: 'DATA ending short of the content-length',
    start: h2((id) => [
      h2Headers(id, [
        [':status', '200'],
        ['content-length', '10'],
      ]),
      h2Data(id, 'hi'),
    ]),
    protocol: 'http2',
  },
  {
    what: 'DATA on a 204',
    start: h2((id) => [h2Headers(id, [[':status', '204']]), h2Data(id, 'SECRET')]),
    protocol: 'http2',
  },
];
