import * as http2 from 'node:http2';
import { describe, expect, it } from 'vitest';
import { connect, constants } from './undici-http2.ts';

describe('undici-http2 (node:http2 for undici inside the daemon bundle)', () => {
  it("spells out node:http2's values for every constant it provides", () => {
    for (const [name, value] of Object.entries(constants)) {
      expect(value, name).toBe((http2.constants as Record<string, unknown>)[name]);
    }
  });

  it('provides every constant undici’s client-h2 destructures when it loads', async () => {
    const { readFile } = await import('node:fs/promises');
    const { createRequire } = await import('node:module');
    const source = await readFile(
      createRequire(import.meta.url).resolve('undici/lib/dispatcher/client-h2.js'),
      'utf8',
    );
    const block = /const \{\s*constants: \{([^}]*)\}\s*\} = http2/.exec(source);
    expect(block, 'client-h2 destructures http2.constants').not.toBeNull();
    const names = block![1]!
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    expect(names.length).toBeGreaterThan(0);
    for (const n of names) expect(Object.keys(constants), n).toContain(n);
    // Whatever else client-h2 calls on the module must be provided too.
    const calls = new Set([...source.matchAll(/\bhttp2\.(\w+)/g)].map((m) => m[1]));
    for (const c of calls) expect(['connect', 'constants'], `http2.${c}`).toContain(c);
  });

  it('connect opens a real HTTP/2 session', async () => {
    const server = http2.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    const session = connect(`http://127.0.0.1:${port}`);
    const body = await new Promise<string>((resolve, reject) => {
      const req = session.request({ ':path': '/' });
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (text += c));
      req.on('end', () => resolve(text));
      req.on('error', reject);
      req.end();
    });
    expect(body).toBe('ok');
    session.close();
    await new Promise((r) => server.close(r));
  });
});
