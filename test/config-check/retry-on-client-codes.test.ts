// `config check` refuses a retryOn status code below 408 (never retried: 1xx–3xx, and 400–407 refuse the request itself); 408 and up pass.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cli, tempDir, writeFiles } from './cli.ts';

/** Runs `meshlet config check` on `config`; resolves with its exit code, stderr and the file's path. */
async function check(config: object): Promise<{ code: number | null; stderr: string; file: string }> {
  const dir = tempDir();
  writeFiles(dir, { 'meshlet.yaml': stringify(config) });
  const file = join(dir, 'meshlet.yaml');
  const r = await cli(['config', 'check', file], dir);
  return { code: r.code, stderr: r.stderr, file };
}

const BASE = { service: { name: 'web', port: 8080 }, listeners: { adminGrpc: { enabled: false } } };

/** What config check prints for `item` at `key`. */
const refusal = (file: string, key: string, item: string) =>
  `meshlet: invalid config: ${file}: ${key}: ${item} is never retried: meshlet retries statuses from 408 up only (1xx are interim, 2xx and 3xx are answers, and 400–407 refuse the request itself, which sent again gets the same answer)\n`;

describe('retryOn status codes below 408', () => {
  it(
    'an upstream listing 400 (a number) or "404" (digits) exits 2 naming the item and why',
    { timeout: 30_000 },
    async () => {
      const bad = await check({
        ...BASE,
        upstreams: { users: { retries: { retryOn: ['gateway-error', 400] } } },
      });
      expect(bad.code, bad.stderr).toBe(2);
      expect(bad.stderr).toBe(refusal(bad.file, 'upstreams.users.retries.retryOn[1]', '400'));
      const digits = await check({ ...BASE, upstreams: { users: { retries: { retryOn: ['404'] } } } });
      expect(digits.code, digits.stderr).toBe(2);
      expect(digits.stderr).toBe(refusal(digits.file, 'upstreams.users.retries.retryOn[0]', '"404"'));
    },
  );

  it('a route override listing 407 or 302 exits 2 too', { timeout: 30_000 }, async () => {
    for (const code of [407, 302]) {
      const r = await check({
        ...BASE,
        routes: [{ match: { pathPrefix: '/x' }, upstream: 'users', retries: { retryOn: [code] } }],
      });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toBe(refusal(r.file, 'routes[0].retries.retryOn[0]', String(code)));
    }
  });

  it('408, 409, 429 and 503 pass', { timeout: 30_000 }, async () => {
    const ok = await check({
      ...BASE,
      upstreams: { users: { retries: { retryOn: [408, '409', 429, 503, 'connect-failure'] } } },
    });
    expect([ok.code, ok.stderr]).toEqual([0, '']);
  });
});
