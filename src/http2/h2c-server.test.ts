import * as http2 from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { H2Sessions, lazyH2cServer } from './h2c-server.ts';

/** A real h2c server made by lazyH2cServer with `idleMs`; `/slow` answers after `slowMs`. */
async function serve(idleMs: number, slowMs = 0): Promise<{ url: string; close(): Promise<void> }> {
  const sessions = new H2Sessions(idleMs);
  const h2 = lazyH2cServer((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow'), slowMs);
    else res.end('ok');
  }, sessions);
  const server = h2();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      sessions.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Resolves with the status of GET `path` on `session`. */
function get(session: http2.ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path });
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('error', reject);
    req.resume();
    req.on('end', () => resolve(status));
  });
}

/** The GOAWAY code the client got and when its session closed, ms after `from`. */
function whenClosed(
  session: http2.ClientHttp2Session,
  from: number,
): Promise<{ goaway: number | null; afterMs: number }> {
  let goaway: number | null = null;
  session.on('goaway', (code) => (goaway = code));
  session.on('error', () => {});
  return new Promise((resolve) =>
    session.on('close', () => resolve({ goaway, afterMs: performance.now() - from })),
  );
}

describe('H2Sessions idle timeout', () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });

  it('closes a session that opens no stream with GOAWAY NO_ERROR after idleMs', async () => {
    const server = await serve(200);
    open.push(server);
    const started = performance.now();
    const session = http2.connect(server.url);
    const closed = await whenClosed(session, started);
    expect(closed.goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(closed.afterMs).toBeGreaterThanOrEqual(190);
    expect(closed.afterMs).toBeLessThan(2000);
  });

  it('keeps a session whose stream outlasts idleMs, and closes it idleMs after the stream ends', async () => {
    const server = await serve(200, 600);
    open.push(server);
    const session = http2.connect(server.url);
    let closedAt = 0;
    session.on('close', () => (closedAt = performance.now()));
    session.on('error', () => {});
    expect(await get(session, '/slow')).toBe(200);
    const ended = performance.now();
    expect(session.closed || session.destroyed).toBe(false);
    await whenClosed(session, ended);
    expect(closedAt - ended).toBeGreaterThanOrEqual(150);
    expect(closedAt - ended).toBeLessThan(2000);
  });

  it('keeps a session busy with requests that each end before idleMs', async () => {
    const server = await serve(300);
    open.push(server);
    const session = http2.connect(server.url);
    session.on('error', () => {});
    // 8 requests 100 ms apart: 800 ms in all, more than twice idleMs, never 300 ms without a stream.
    for (let i = 0; i < 8; i++) {
      expect(await get(session, '/')).toBe(200);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(session.closed || session.destroyed).toBe(false);
    const closed = await whenClosed(session, performance.now());
    expect(closed.goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });
});
