// JwtAuthenticator's cache of verified tokens: a hit skips verification, yet exp is re-checked on every use.
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { gatewayAuthSpec, type JwtAuthSpec } from '../config/gateway-schema.ts';
import { JwtAuthenticator } from './jwt-authenticator.ts';

const SECRET = 'unit-test-secret-unit-test-secret!!';

async function token(expSeconds: number): Promise<string> {
  return new SignJWT({ sub: 'u1', exp: expSeconds })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode(SECRET));
}

describe('JwtAuthenticator verified-token cache', () => {
  const spec = gatewayAuthSpec.parse({ type: 'jwt', secretEnv: 'K', clockSkew: 0 }) as JwtAuthSpec;

  it('answers a repeated token from the cache (synchronously) and refuses it once exp passed', async () => {
    let now = Date.now();
    const auth = new JwtAuthenticator('t', spec, { env: { K: SECRET }, now: () => now });
    const t = await token(Math.floor(now / 1000) + 10);
    const first = await auth.authenticate({ bearer: t, headers: {} });
    expect(first.kind).toBe('ok');
    const second = auth.authenticate({ bearer: t, headers: {} });
    expect(second).not.toBeInstanceOf(Promise);
    expect((second as { kind: string }).kind).toBe('ok');
    now += 11_000;
    const expired = await auth.authenticate({ bearer: t, headers: {} });
    expect(expired).toEqual({ kind: 'invalid', reason: 'token expired' });
  });

  it('with verifiedCacheSize 0 every use verifies again', async () => {
    const off = { ...spec, verifiedCacheSize: 0 };
    const auth = new JwtAuthenticator('t', off, { env: { K: SECRET } });
    const t = await token(Math.floor(Date.now() / 1000) + 10);
    await auth.authenticate({ bearer: t, headers: {} });
    expect(auth.authenticate({ bearer: t, headers: {} })).toBeInstanceOf(Promise);
  });
});
