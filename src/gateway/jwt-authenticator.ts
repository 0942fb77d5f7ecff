// The `jwt` authenticator: a bearer JWT verified locally with jose (a shared secret, or keys from a JWKS URL).
import { readFileSync } from 'node:fs';
import { errors, type JWTPayload, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { JwtAuthSpec } from '../config/gateway-schema.ts';
import {
  type Authenticator,
  type AuthOutcome,
  type Credentials,
  looksLikeJwt,
  principalFromClaims,
  SKIP,
} from './authenticator.ts';
import { JWKS_UNAVAILABLE, type JwksFetchResult, JwksKeys } from './jwks-keys.ts';

/** Hooks of {@link JwtAuthenticator}. */
export interface JwtAuthenticatorOptions {
  /** Counts JWKS fetches (metrics). */
  readonly onJwksFetch?: (result: JwksFetchResult) => void;
  /** Wall-clock time for `exp`/`nbf`, ms since the epoch. Defaults to `Date.now`. */
  readonly now?: () => number;
  /** The environment `secretEnv` is read from. Defaults to `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
}

/** A cached verification. */
interface VerifiedToken {
  readonly outcome: AuthOutcome;
  readonly expMs: number;
  readonly nbfMs: number;
  readonly generation: number;
}

/** Thrown inside the key resolver when the JWKS server cannot be reached. */
class JwksUnavailableError extends Error {}

/** Reads the shared secret at load time: from `secretFile` (trailing newline dropped) or `secretEnv`. */
function loadSecret(name: string, spec: JwtAuthSpec, env: NodeJS.ProcessEnv): Uint8Array {
  let secret: string | undefined;
  if (spec.secretFile !== undefined) secret = readFileSync(spec.secretFile, 'utf8').replace(/\r?\n$/, '');
  else if (spec.secretEnv !== undefined) secret = env[spec.secretEnv];
  if (secret === undefined || secret === '') {
    throw new Error(
      `gateway.auth.${name}: no secret (${spec.secretFile !== undefined ? `file ${spec.secretFile} is empty` : `environment variable ${spec.secretEnv} is unset`})`,
    );
  }
  return new TextEncoder().encode(secret);
}

/** Why a token was refused, in words for the 401's `error_description` (never the token). */
function reasonOf(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'token expired';
  if (err instanceof errors.JWTClaimValidationFailed)
    return `claim "${err.claim}" ${err.reason === 'check_failed' ? 'check failed' : err.reason}`;
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature verification failed';
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key matches the token (kid)';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'malformed token';
  return 'token not valid';
}

/**
 * Verifies `Authorization: Bearer <JWT>` locally. With `secretFile`/`secretEnv`: HMAC (HS256 by
 * default) with the secret read at load. With `jwksUrl`: the token's `kid` and `alg` pick a key
 * from {@link JwksKeys} (RS256, ES256, EdDSA by default). The algorithm list is fixed at load and
 * never taken from the token, so `alg: none` and HS256-with-a-public-key fail. `exp` is required; a
 * verified token is cached (`verifiedCacheSize`) until its `exp`, its times re-checked on each use;
 * `exp`, `nbf`, `iss` and `aud` are checked with `clockSkew`. A bearer that is not JWT-shaped is
 * left to the next authenticator (an API key sent as a bearer token).
 */
export class JwtAuthenticator implements Authenticator {
  readonly name: string;
  readonly challenge = 'Bearer realm="meshlet"';
  readonly identityHeaders: readonly string[];
  /** The JWKS key cache, when the authenticator uses one. */
  readonly jwks: JwksKeys | null;
  readonly #spec: JwtAuthSpec;
  readonly #key: Uint8Array | JWTVerifyGetKey;
  readonly #verifyOptions: Parameters<typeof jwtVerify>[2] & object;
  readonly #now: () => number;
  /** Verified tokens → their principal, `exp`/`nbf` (ms) and the JWKS generation they were verified against. */
  readonly #verified = new Map<string, VerifiedToken>();
  readonly #skewMs: number;

  /** @throws Error when the secret cannot be read (a config error at load). */
  constructor(name: string, spec: JwtAuthSpec, options: JwtAuthenticatorOptions = {}) {
    this.name = name;
    this.#spec = spec;
    this.identityHeaders = Object.values(spec.claims);
    this.#now = options.now ?? Date.now;
    this.#skewMs = spec.clockSkew;
    if (spec.jwksUrl !== undefined) {
      const jwks = new JwksKeys({
        url: spec.jwksUrl,
        ttlMs: spec.jwksCacheTtl,
        minRefreshMs: spec.jwksMinRefreshInterval,
        timeoutMs: spec.jwksTimeout,
        ...(options.onJwksFetch === undefined ? {} : { onFetch: options.onJwksFetch }),
      });
      this.jwks = jwks;
      this.#key = async (header) => {
        const key = await jwks.key(header.kid, header.alg ?? '');
        if (key === JWKS_UNAVAILABLE) throw new JwksUnavailableError('JWKS server unreachable');
        if (key === undefined) throw new errors.JWKSNoMatchingKey();
        return key;
      };
    } else {
      this.jwks = null;
      this.#key = loadSecret(name, spec, options.env ?? process.env);
    }
    const algorithms =
      spec.algorithms ?? (spec.jwksUrl === undefined ? ['HS256'] : ['RS256', 'ES256', 'EdDSA']);
    this.#verifyOptions = {
      algorithms,
      clockTolerance: spec.clockSkew / 1000,
      requiredClaims: ['exp'],
      ...(spec.issuer === undefined ? {} : { issuer: spec.issuer }),
      ...(spec.audience === undefined ? {} : { audience: spec.audience }),
    };
  }

  authenticate(credentials: Credentials): AuthOutcome | Promise<AuthOutcome> {
    const token = credentials.bearer;
    if (token === undefined || !looksLikeJwt(token)) return SKIP;
    const hit = this.#verified.get(token);
    if (hit !== undefined) {
      const now = this.#now();
      if (
        now < hit.expMs + this.#skewMs &&
        now >= hit.nbfMs - this.#skewMs &&
        hit.generation === (this.jwks?.generation ?? 0)
      ) {
        return hit.outcome;
      }
      this.#verified.delete(token);
    }
    return this.#verify(token);
  }

  async #verify(token: string): Promise<AuthOutcome> {
    let payload: JWTPayload;
    try {
      const options = { ...this.#verifyOptions, currentDate: new Date(this.#now()) };
      payload =
        typeof this.#key === 'function'
          ? (await jwtVerify(token, this.#key, options)).payload
          : (await jwtVerify(token, this.#key, options)).payload;
    } catch (err) {
      if (err instanceof JwksUnavailableError) return { kind: 'unavailable', reason: err.message };
      return { kind: 'invalid', reason: reasonOf(err) };
    }
    const s = this.#spec;
    const outcome: AuthOutcome = {
      kind: 'ok',
      principal: principalFromClaims(this.name, payload, s.claims, s),
    };
    if (s.verifiedCacheSize > 0 && payload.exp !== undefined) {
      if (this.#verified.size >= s.verifiedCacheSize) {
        this.#verified.delete(this.#verified.keys().next().value as string);
      }
      this.#verified.set(token, {
        outcome,
        expMs: payload.exp * 1000,
        nbfMs: (payload.nbf ?? 0) * 1000,
        generation: this.jwks?.generation ?? 0,
      });
    }
    return outcome;
  }

  close(): void {
    this.#verified.clear();
  }
}
