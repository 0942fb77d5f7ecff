// A reload that removes or renames gateway authenticators drops their metric series; those of authenticators that remain stay.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { ConfigInput } from '../../src/config/schema.ts';
import { hashApiKey } from '../../src/gateway/api-key-authenticator.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import {
  call,
  type IdentityService,
  type JwksServer,
  mint,
  type SigningKey,
  signingKey,
  startIdentityService,
  startJwksServer,
} from './fixtures.ts';
import { GATEWAY_LISTENERS, type ReloadableGateway, startReloadableGateway } from './reloadable-gateway.ts';

describe('gateway authenticator series across a reload', () => {
  let upstream: TestUpstream;
  let identity: IdentityService;
  let jwks: JwksServer;
  let key: SigningKey;
  let g: ReloadableGateway;

  /** The gateway block with its authenticators named `names` (apiKey, apiKey kept, jwt, validate). */
  const config = (
    keysFile: string,
    names: { keys: string; stays: string; jwt: string; validate: string },
    staysType: 'apiKey' | 'validate' = 'apiKey',
  ): ConfigInput => ({
    listeners: GATEWAY_LISTENERS,
    registry: {
      endpoints: { web: [upstream.endpoint], 'identity-service': [`127.0.0.1:${identity.port}`] },
    },
    gateway: {
      auth: {
        [names.keys]: { type: 'apiKey', file: keysFile },
        [names.stays]:
          staysType === 'apiKey'
            ? { type: 'apiKey', file: keysFile }
            : { type: 'validate', url: 'http://identity-service/auth/validate' },
        [names.jwt]: { type: 'jwt', jwksUrl: jwks.url, audience: 'api', claims: { sub: 'x-user-id' } },
        [names.validate]: { type: 'validate', url: 'http://identity-service/auth/validate' },
      },
      routes: [
        { match: { pathPrefix: '/keys/' }, upstream: 'web', auth: [names.keys] },
        { match: { pathPrefix: '/stays/' }, upstream: 'web', auth: [names.stays] },
        { match: { pathPrefix: '/jwt/' }, upstream: 'web', auth: [names.jwt] },
        { match: { pathPrefix: '/validate/' }, upstream: 'web', auth: [names.validate] },
      ],
    },
  });
  let keysFile: string;
  const first = { keys: 'old', stays: 'stays', jwt: 'partners', validate: 'identity' };
  const second = { keys: 'renamed', stays: 'stays', jwt: 'partners2', validate: 'identity2' };

  const scrape = (): Promise<string[]> => g.series('authenticator');

  const reloadTo = async (input: ConfigInput): Promise<void> => {
    expect(await g.reload(input)).toBe(true);
  };

  beforeAll(async () => {
    upstream = await startUpstream();
    identity = await startIdentityService();
    identity.tokens.set('good-token', { user_id: 'u-1' });
    key = await signingKey('k1');
    jwks = await startJwksServer([key.jwk]);
    const dir = tempDir('meshlet-gw-retired-');
    keysFile = join(dir, 'keys.yaml');
    writeFileSync(
      keysFile,
      stringify({
        keys: [
          { name: 'one', sha256: hashApiKey('key-one') },
          { name: 'two', sha256: hashApiKey('key-two') },
        ],
      }),
    );
    g = await startReloadableGateway(config(keysFile, first), dir);
  });
  afterAll(async () => {
    await g?.close();
    await upstream?.close();
    await identity?.close();
    await jwks?.close();
  });

  it('renamed and removed authenticators lose their series; the one that remains keeps its own', async () => {
    const token = await mint(key, { sub: 'u-1', aud: 'api' });
    expect((await call(g.gw, '/keys/a', { 'x-api-key': 'key-one' })).status).toBe(200);
    expect((await call(g.gw, '/jwt/a', { authorization: `Bearer ${token}` })).status).toBe(200);
    expect((await call(g.gw, '/validate/a', { authorization: 'Bearer good-token' })).status).toBe(200);
    expect(await scrape()).toEqual([
      'meshlet_gateway_api_keys{authenticator="old"} 2',
      'meshlet_gateway_api_keys{authenticator="stays"} 2',
      'meshlet_gateway_jwks_fetches_total{authenticator="partners",result="ok"} 1',
      'meshlet_gateway_validate_calls_total{authenticator="identity",result="allowed"} 1',
    ]);

    await reloadTo(config(keysFile, second));
    expect(await scrape()).toEqual([
      'meshlet_gateway_api_keys{authenticator="renamed"} 2',
      'meshlet_gateway_api_keys{authenticator="stays"} 2',
    ]);
    // The new names count as the old ones did.
    expect((await call(g.gw, '/keys/a', { 'x-api-key': 'key-two' })).status).toBe(200);
    expect((await call(g.gw, '/validate/b', { authorization: 'Bearer good-token' })).status).toBe(200);
    expect(await scrape()).toContain(
      'meshlet_gateway_validate_calls_total{authenticator="identity2",result="allowed"} 1',
    );
  });

  it('a name rebuilt as another type keeps only the series of its new type', async () => {
    await reloadTo(config(keysFile, second, 'validate'));
    const after = await scrape();
    expect(after).not.toContain('meshlet_gateway_api_keys{authenticator="stays"} 2');
    expect(after.filter((l) => l.includes('authenticator="stays"'))).toEqual([]);
    expect((await call(g.gw, '/stays/a', { authorization: 'Bearer good-token' })).status).toBe(200);
    expect(await scrape()).toContain(
      'meshlet_gateway_validate_calls_total{authenticator="stays",result="allowed"} 1',
    );
    expect(await scrape()).toContain('meshlet_gateway_api_keys{authenticator="renamed"} 2');
  });
});
