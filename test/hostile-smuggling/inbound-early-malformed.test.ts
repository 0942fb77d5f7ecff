// Inbound listener: a local app's response malformed right after its head (in the same read) is a 502 to a direct caller, over HTTP/1.1 or HTTP/2, not a closed connection with no answer.
import { readFileSync, rmSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { h2Exchange, type H2Tls } from '../helpers/h2-request.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { metricValue } from '../helpers/metrics.ts';
import { collectReply, parseReply, replyComplete } from '../helpers/raw-http.ts';
import { makePki, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { EARLY_MALFORMED, protocolName } from './early-malformed.ts';
import { HOSTILE_PATH, type ScriptedEndpoint } from './response-endpoints.ts';

/** What a direct caller of the inbound listener got: status 0 when the connection or stream ended with no answer. */
interface Answer {
  status: number;
  error: string | undefined;
  body: string;
  /** The whole answer as read (HTTP/1.1: raw text; HTTP/2: head and body as JSON), for failure messages. */
  raw: string;
}

/** One HTTP/1.1 request (`GET path`, Host `orders`) over mTLS as the `web` peer, read until whole or closed (≤ 3 s). */
async function h1Call(port: number, tls: Required<H2Tls>, path: string): Promise<Answer> {
  const socket = tlsConnect(
    { port, host: '127.0.0.1', ...tls, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined },
    () => socket.write(`GET ${path} HTTP/1.1\r\nhost: orders\r\n\r\n`),
  );
  const { text } = await collectReply(socket, { timeoutMs: 3000, until: replyComplete });
  if (!replyComplete(text)) return { status: 0, error: undefined, body: '', raw: text };
  const reply = parseReply(text);
  return { status: reply.status, error: reply.headers['x-meshlet-error'], body: reply.body, raw: text };
}

/** One HTTP/2 request (`GET path`, `:authority` `orders`) over mTLS as the `web` peer; status 0 when the stream or session failed. */
async function h2Call(port: number, tls: Required<H2Tls>, path: string): Promise<Answer> {
  try {
    const { head, body } = await h2Exchange(
      `https://127.0.0.1:${port}`,
      { ':method': 'GET', ':path': path, ':authority': 'orders' },
      tls,
      3000,
    );
    const error = head['x-meshlet-error'];
    return {
      status: Number(head[':status']),
      error: typeof error === 'string' ? error : undefined,
      body,
      raw: JSON.stringify({ head, body }),
    };
  } catch (err) {
    return { status: 0, error: undefined, body: '', raw: String(err) };
  }
}

/** The local apps: each answers `/hostile` with its malformed response, anything else honestly. */
const rows = EARLY_MALFORMED.map((r) => ({ ...r, name: `${protocolName(r.protocol)} app: ${r.what}` }));

const callers = [
  { caller: 'HTTP/1.1', call: h1Call },
  { caller: 'HTTP/2', call: h2Call },
] as const;

/** Every row once per caller protocol: each with its own local app and meshlet (an HTTP/2 app scripts only its first stream). */
const cases = rows.flatMap((row) => callers.map((c) => ({ ...row, ...c })));

describe('inbound listener: a local-app response malformed in the read that carried its head', () => {
  let pki: TestPki;
  let tls: Required<H2Tls>;
  const apps: ScriptedEndpoint[] = [];
  const meshlets: InProcessMeshlet[] = [];
  beforeAll(async () => {
    pki = await makePki();
    const leaf = await pki.write('web');
    tls = { ca: readFileSync(pki.caFile), cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) };
    for (const c of cases) {
      const app = await c.start();
      apps.push(app);
      meshlets.push(
        await startMeshlet({
          service: { name: 'orders', port: app.port, address: '127.0.0.1', protocol: c.protocol },
          listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
          tls: await tlsFilesConfig(pki, 'orders'),
        }),
      );
    }
  }, 60_000);
  afterAll(async () => {
    for (const m of meshlets) await m.close();
    for (const a of apps) await a.close();
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it.each(cases.map((c, i) => ({ ...c, i })))(
    '$name, $caller caller: 502 upstream_unreachable, nothing of the body; the next request gets its own answer',
    async (c) => {
      const b = meshlets[c.i]!;
      const port = b.daemon.addresses().inbound!.port;
      const got = await c.call(port, tls, HOSTILE_PATH);
      expect({ status: got.status, error: got.error }, got.raw).toEqual({
        status: 502,
        error: 'upstream_unreachable',
      });
      expect(got.raw).not.toContain('SECRET');
      expect(
        await metricValue(b.admin, 'meshlet_local_replies_total', {
          direction: 'inbound',
          upstream: 'orders',
          code: 'upstream_unreachable',
        }),
      ).toBe(1);
      const next = await c.call(port, tls, '/next');
      expect(next.status, next.raw).toBe(200);
      expect(next.body).toMatch(/^ok (\/next|stream \d+) c\d+$/);
    },
  );
});
