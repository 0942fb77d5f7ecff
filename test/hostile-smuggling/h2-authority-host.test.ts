// HTTP/2 `:authority` and `Host` together on the outbound, gateway and inbound listeners (RFC 9113 §8.3.1): what the client gets and what Host reaches the endpoint.
import type { OutgoingHttpHeaders } from 'node:http2';
import { describe, expect, it } from 'vitest';
import { h2Exchange } from '../helpers/h2-request.ts';
import * as F from '../hostile-h2/h2-frames.ts';
import { smugglingMesh, type SmugglingMesh } from './smuggling-mesh.ts';

type ListenerName = 'outbound' | 'gateway' | 'inbound';

/** What the client got (`:status` and `x-meshlet-error`, or the stream's error) and the endpoint's request line and Host fields. */
interface Outcome {
  client: string;
  reached: { line: string; host: string[] }[];
}

const REFUSED: Outcome = { client: '400 bad_request', reached: [] };
/** Forwarded as `GET /h`, the endpoint reading exactly `host` as its Host fields. */
const forwarded = (...host: string[]): Outcome => ({
  client: '200',
  reached: [{ line: 'GET /h HTTP/1.1', host }],
});

/** A row: the authority fields (`AUTH` stands for the listener's authority, `UPPER` for it in upper case) and the one outcome every listener must give. */
const rows: { name: string; fields: OutgoingHttpHeaders; want: (auth: string) => Outcome }[] = [
  {
    name: 'Host equal to :authority',
    fields: { ':authority': 'AUTH', host: 'AUTH' },
    want: (a) => forwarded(a),
  },
  { name: 'no Host: :authority becomes Host', fields: { ':authority': 'AUTH' }, want: (a) => forwarded(a) },
  // RFC 9113 §8.3.1 lets a request carry Host instead of :authority.
  { name: 'Host without :authority', fields: { host: 'AUTH' }, want: (a) => forwarded(a) },
  // Host names are case-insensitive (RFC 3986 §3.2.2): the same authority; Host goes on as sent.
  {
    name: 'Host equal to :authority but for case',
    fields: { ':authority': 'AUTH', host: 'UPPER' },
    want: (a) => forwarded(a.toUpperCase()),
  },
  {
    name: 'Host naming another authority',
    fields: { ':authority': 'AUTH', host: 'evil' },
    want: () => REFUSED,
  },
  {
    name: ':authority naming another authority than Host',
    fields: { ':authority': 'evil', host: 'AUTH' },
    want: () => REFUSED,
  },
  // Compared as written: a port on one side only is refused, not resolved against the scheme's default.
  {
    name: 'Host with a port, :authority without',
    fields: { ':authority': 'AUTH', host: 'AUTH:80' },
    want: () => REFUSED,
  },
  {
    name: ':authority with a port, Host without',
    fields: { ':authority': 'AUTH:80', host: 'AUTH' },
    want: () => REFUSED,
  },
  {
    name: 'Host differing by a trailing dot',
    fields: { ':authority': 'AUTH', host: 'AUTH.' },
    want: () => REFUSED,
  },
];

/** Sends `GET /h` with `fields` (AUTH and UPPER replaced by `auth`) to `listener` over HTTP/2. */
async function send(
  mesh: SmugglingMesh,
  listener: ListenerName,
  fields: OutgoingHttpHeaders,
  auth: string,
): Promise<Outcome> {
  const port = { outbound: mesh.outboundPort, gateway: mesh.gatewayPort, inbound: mesh.inboundPort }[
    listener
  ];
  const tls = listener === 'inbound' ? mesh.tls : undefined;
  const origin = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`;
  const headers: OutgoingHttpHeaders = { ':method': 'GET', ':path': '/h' };
  for (const [name, value] of Object.entries(fields))
    headers[name] = String(value).replaceAll('AUTH', auth).replaceAll('UPPER', auth.toUpperCase());
  const before = mesh.rec.requests().length;
  let client: string;
  try {
    const { head } = await h2Exchange(origin, headers, tls, 3000);
    const error = head['x-meshlet-error'];
    client = [String(head[':status']), error].filter((s) => s !== undefined).join(' ');
  } catch (err) {
    client = `failed: ${(err as Error).message}`;
  }
  await new Promise((r) => setTimeout(r, 100));
  const reached = mesh.rec
    .requests()
    .slice(before)
    .map((r) => ({
      line: r.line,
      host: r.fields.filter(([n]) => n.toLowerCase() === 'host').map(([, v]) => v),
    }));
  return { client, reached };
}

describe('HTTP/2 :authority and Host: one authority or a 400, on every listener', () => {
  const mesh = smugglingMesh();
  const auths: Record<ListenerName, string> = { outbound: 'users', gateway: 'users', inbound: 'orders' };
  for (const listener of ['outbound', 'gateway', 'inbound'] as const)
    it(`${listener}: each row as the table says; a disagreement never reaches the endpoint`, async () => {
      const auth = auths[listener];
      for (const row of rows) {
        const got = await send(mesh, listener, row.fields, auth);
        expect({ row: row.name, ...got }).toEqual({ row: row.name, ...row.want(auth) });
      }
    }, 30_000);

  // node:http2's client sends one Host; raw frames carry two. nghttp2 refuses a repeated Host itself.
  for (const listener of ['outbound', 'gateway', 'inbound'] as const)
    it(`${listener}: two Host fields (one of them :authority) reset the stream (PROTOCOL_ERROR), nothing reaches the endpoint`, async () => {
      const auth = auths[listener];
      const port = { outbound: mesh.outboundPort, gateway: mesh.gatewayPort, inbound: mesh.inboundPort }[
        listener
      ];
      const pairs: [string, string][] = [
        [auth, 'evil'],
        ['evil', auth],
        [auth, auth],
      ];
      for (const [first, second] of pairs) {
        const before = mesh.rec.requests().length;
        const raw = await F.RawH2.open(port, listener === 'inbound' ? { tls: mesh.tls } : {});
        try {
          const extra = [F.literal('host', first), F.literal('host', second)];
          raw.write(F.headers(1, F.requestBlock(auth, '/h', 'GET', extra)));
          await raw.until(() => raw.resets.has(1) || raw.answered.has(1), 3000);
          await new Promise((r) => setTimeout(r, 100));
          expect({ hosts: [first, second], reset: raw.resets.get(1), answered: raw.answered.has(1) }).toEqual(
            {
              hosts: [first, second],
              reset: F.H2Error.PROTOCOL_ERROR,
              answered: false,
            },
          );
          expect(mesh.rec.requests().slice(before)).toEqual([]);
        } finally {
          raw.destroy();
        }
      }
    }, 30_000);
});
