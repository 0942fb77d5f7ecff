// Test fixtures of the gateway: a real JWKS server, a real identity service, token minting, and a request client with counts.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { request } from 'undici';

/**
 * A JWKS server on 127.0.0.1 that counts its fetches; `keys` may be replaced (rotation). With `huge`
 * set it streams the keys followed by `hugeBytes` (default 32 MiB) of padding keys, and records in
 * `writtenAtClose` how many padding bytes each response had written when its connection closed.
 */
export interface JwksServer {
  readonly url: string;
  keys: JWK[];
  fetches: number;
  huge: boolean;
  hugeBytes: number;
  writtenAtClose: number[];
  close(): Promise<void>;
}

/** Streams `{"keys":[…keys, …padding]}` until `state.hugeBytes` of padding went out (with backpressure). */
function sendHuge(res: ServerResponse, state: JwksServer): void {
  let sent = 0;
  res.on('close', () => state.writtenAtClose.push(sent));
  res.write(`{"keys":[${state.keys.map((k) => JSON.stringify(k)).join(',')}`);
  const pad = `,${JSON.stringify({ kty: 'oct', kid: 'pad', k: 'A'.repeat(64 * 1024) })}`;
  const pump = (): void => {
    while (sent < state.hugeBytes) {
      if (res.destroyed) return;
      sent += pad.length;
      if (!res.write(pad)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end(']}');
  };
  pump();
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

export async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  const state = {
    keys,
    fetches: 0,
    huge: false,
    hugeBytes: 32 * 1024 * 1024,
    writtenAtClose: [] as number[],
  };
  const server = createServer((_req, res) => {
    state.fetches++;
    res.writeHead(200, { 'content-type': 'application/json' });
    if (state.huge) sendHuge(res, jwks);
    else res.end(JSON.stringify({ keys: state.keys }));
  });
  const port = await listen(server);
  const jwks = Object.assign(state, {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    close: () => closeServer(server),
  }) as JwksServer;
  return jwks;
}

/** A signing key pair with its public JWK (kid and alg set). */
export interface SigningKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  readonly jwk: JWK;
}

export async function signingKey(kid: string, alg = 'RS256'): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, jwk };
}

/** Mints a token: `claims` plus `exp` one hour ahead unless given. */
export async function mint(
  key: SigningKey | Uint8Array,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
): Promise<string> {
  const jwt = new SignJWT({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
  if (key instanceof Uint8Array) return jwt.setProtectedHeader({ alg: 'HS256', ...header }).sign(key);
  return jwt.setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey);
}

/** An unsigned `alg: none` token. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}.`;
}

/** An identity service: `POST /auth/validate`; `tokens` maps an allowed token to its JSON answer. */
export interface IdentityService {
  readonly url: string;
  readonly port: number;
  tokens: Map<string, Record<string, unknown>>;
  calls: number;
  close(): Promise<void>;
}

export async function startIdentityService(): Promise<IdentityService> {
  const state = { tokens: new Map<string, Record<string, unknown>>(), calls: 0 };
  const server = createServer((req: IncomingMessage, res) => {
    state.calls++;
    req.resume();
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const found =
      req.method === 'POST' && req.url === '/auth/validate' && token !== undefined
        ? state.tokens.get(token)
        : undefined;
    res.writeHead(found === undefined ? 401 : 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(found ?? { error: 'invalid token' }));
  });
  const bound = await listen(server);
  await new Promise((r) => setTimeout(r, 0));
  return Object.assign(state, {
    url: `http://127.0.0.1:${bound}/auth/validate`,
    port: bound,
    close: () => closeServer(server),
  }) as IdentityService;
}

/** One request to the gateway; resolves with status, headers and the body as text. */
export async function call(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const res = await request(`${base}${path}`, { method: method as 'GET', headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** Runs `n` calls with at most `concurrency` in flight; resolves with their statuses. */
export async function many(
  n: number,
  concurrency: number,
  one: (i: number) => Promise<number>,
): Promise<number[]> {
  const out: number[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await one(i);
      }
    }),
  );
  return out;
}

/** The gateway's base URL from a started in-process meshlet. */
export function gatewayUrl(daemon: { addresses(): { gateway?: { port: number } } }, scheme = 'http'): string {
  return `${scheme}://127.0.0.1:${daemon.addresses().gateway!.port}`;
}
