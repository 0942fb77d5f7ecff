// Inbound listener: a local app's interim (1xx) answers, in the read of the final one or before it, as on the outbound side: 103 Early Hints passes on with its link, others are dropped; the caller gets the final answer.
import { readFileSync, rmSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { h2Exchange, type H2Tls } from '../helpers/h2-request.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { collectReply, parseReply, replyComplete } from '../helpers/raw-http.ts';
import { makePki, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';
import { type H1Script, type ScriptedEndpoint, startH1Endpoint } from './response-endpoints.ts';

const HINTS = 'HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n';
const PROCESSING = 'HTTP/1.1 102 Processing\r\n\r\n';
const FINAL = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi';

const rows: { name: string; script: H1Script; hints: boolean }[] = [
  { name: '103 Early Hints in the read of the final answer', script: { bytes: HINTS + FINAL }, hints: true },
  {
    name: '103 Early Hints 30 ms before the final answer',
    script: { bytes: HINTS, later: FINAL },
    hints: true,
  },
  {
    name: '102 Processing in the read of the final answer',
    script: { bytes: PROCESSING + FINAL },
    hints: false,
  },
  {
    name: '102 Processing 30 ms before the final answer',
    script: { bytes: PROCESSING, later: FINAL },
    hints: false,
  },
];

describe('inbound listener: interim answers from the local app', () => {
  let pki: TestPki;
  let tls: Required<H2Tls>;
  let app: ScriptedEndpoint;
  let b: InProcessMeshlet;
  let port: number;
  beforeAll(async () => {
    pki = await makePki();
    const leaf = await pki.write('web');
    tls = { ca: readFileSync(pki.caFile), cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) };
    app = await startH1Endpoint(Object.fromEntries(rows.map((row, i) => [`/interim-${i}`, row.script])));
    b = await startMeshlet({
      service: { name: 'orders', port: app.port, address: '127.0.0.1' },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
    port = b.daemon.addresses().inbound!.port;
  }, 30_000);
  afterAll(async () => {
    await b?.close();
    await app?.close();
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it.each(rows.map((row, i) => ({ ...row, i })))('$name: an HTTP/1.1 caller', async (row) => {
    const socket = tlsConnect(
      { port, host: '127.0.0.1', ...tls, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined },
      () => socket.write(`GET /interim-${row.i} HTTP/1.1\r\nhost: orders\r\n\r\n`),
    );
    const { text } = await collectReply(socket, {
      timeoutMs: 3000,
      until: (t) => t.includes('HTTP/1.1 200 ') && replyComplete(t.slice(t.indexOf('HTTP/1.1 200 '))),
    });
    const final = text.indexOf('HTTP/1.1 200 ');
    expect(final, text).not.toBe(-1);
    const interim = text.slice(0, final);
    if (row.hints)
      expect(interim.toLowerCase(), text).toMatch(
        /^http\/1\.1 103 early hints\r\nlink: <\/app\.css>; rel=preload\r\n/,
      );
    else expect(interim, text).toBe('');
    const reply = parseReply(text.slice(final));
    expect({ status: reply.status, body: reply.body }).toEqual({ status: 200, body: 'hi' });
  });

  it.each(rows.map((row, i) => ({ ...row, i })))('$name: an HTTP/2 caller', async (row) => {
    const got = await h2Exchange(
      `https://127.0.0.1:${port}`,
      { ':method': 'GET', ':path': `/interim-${row.i}`, ':authority': 'orders' },
      tls,
      3000,
    );
    expect({ status: got.head[':status'], error: got.head['x-meshlet-error'], body: got.body }).toEqual({
      status: 200,
      error: undefined,
      body: 'hi',
    });
  });
});
