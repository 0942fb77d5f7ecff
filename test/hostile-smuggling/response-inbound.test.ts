// Hostile local-app responses on the inbound path (app → meshlet B's inbound listener → mTLS → meshlet A → client): the client gets its answer or a 502, the next client its own.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import {
  clientRequest,
  type H1Script,
  type ScriptedEndpoint,
  startH1Endpoint,
} from './response-endpoints.ts';

const INJECTED = 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nSECRET';
const OK_HI = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi';

interface Row {
  name: string;
  script: H1Script;
  status: number;
  body?: string;
  method?: string;
  headOnly?: boolean;
}

const rows: Row[] = [
  {
    name: 'a second response right after the body',
    script: { bytes: OK_HI + INJECTED },
    status: 200,
    body: 'hi',
  },
  {
    name: 'a second response 30 ms later',
    script: { bytes: OK_HI, later: INJECTED },
    status: 200,
    body: 'hi',
  },
  {
    name: 'content-length with transfer-encoding: chunked',
    script: {
      bytes: `HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n${INJECTED}`,
    },
    status: 502,
  },
  {
    name: 'two different content-lengths',
    script: { bytes: `HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 46\r\n\r\nhi${INJECTED}` },
    status: 502,
  },
  {
    name: 'a content-length shorter than the body',
    script: { bytes: `HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi${INJECTED}` },
    status: 200,
    body: 'hi',
  },
  {
    name: 'a chunk size that is not hex',
    script: { bytes: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n' },
    status: 502,
  },
  {
    name: 'a 204 with a body',
    script: { bytes: `HTTP/1.1 204 No Content\r\ncontent-length: 6\r\n\r\nSECRET${INJECTED}` },
    status: 204,
    headOnly: true,
  },
  {
    name: 'an answer to HEAD with a body',
    method: 'HEAD',
    script: { bytes: `HTTP/1.1 200 OK\r\n\r\n${INJECTED}` },
    status: 200,
  },
  {
    name: 'a 102 with a body',
    script: { bytes: `HTTP/1.1 102 Processing\r\ncontent-length: 6\r\n\r\nSECRET${OK_HI}` },
    status: 502,
  },
  {
    name: 'HTTP/1.0 keep-alive without a length (body until the close)',
    script: { bytes: 'HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\nhi', closeAfterMs: 50 },
    status: 200,
    body: 'hi',
  },
];

describe('hostile local-app responses through the inbound listener', () => {
  let pki: TestPki;
  let app: ScriptedEndpoint;
  let b: InProcessMeshlet;
  let a: InProcessMeshlet;
  let port: number;
  beforeAll(async () => {
    pki = await makePki();
    app = await startH1Endpoint(Object.fromEntries(rows.map((row, i) => [`/hostile-${i}`, row.script])));
    b = await startMeshlet({
      service: { name: 'orders', port: app.port, address: '127.0.0.1' },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
    a = await startMeshlet({
      tls: await tlsFilesConfig(pki, 'web'),
      registry: { type: 'static', endpoints: { orders: [peerEndpoint(b)] } },
      upstreams: { orders: { retries: { attempts: 1 }, timeouts: { perTry: '2s', idle: '400ms' } } },
    });
    port = Number(new URL(a.outbound).port);
  }, 30_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await app?.close();
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it.each(rows.map((row, i) => ({ ...row, i })))('$name', async (row) => {
    const got = await clientRequest(port, `/hostile-${row.i}`, 'orders', {
      method: row.method,
      headOnly: row.headOnly,
    });
    expect(got.status, got.raw).toBe(row.status);
    expect(got.complete, got.raw).toBe(true);
    expect(got.raw).not.toContain('SECRET');
    if (row.status === 502) expect(got.headers['x-meshlet-error']).toBe('upstream_unreachable');
    else if (row.body !== undefined) expect(got.body).toBe(row.body);
    expect(
      got.headers['content-length'] !== undefined && got.headers['transfer-encoding'] !== undefined,
    ).toBe(false);
    await new Promise((r) => setTimeout(r, 60));
    const next = await clientRequest(port, `/next-${row.i}`, 'orders');
    expect(next.status, next.raw).toBe(200);
    expect(next.body).toMatch(new RegExp(`^ok /next-${row.i} c\\d+$`));
  });
});
