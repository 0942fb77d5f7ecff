// Request context and response writers shared by the double's route handlers.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authorizer } from './acl.ts';
import type { Agent } from './agent.ts';
import type { BlockingContext } from './blocking.ts';
import { HttpError } from './register.ts';

/** Everything a route handler needs about one request. */
export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  /** Decoded path, e.g. `/v1/kv/a/b`. */
  path: string;
  query: URLSearchParams;
  body: Buffer;
  agent: Agent;
  /** The token's rights (resolved lazily: unknown tokens throw 403 "ACL not found"). */
  auth: () => Authorizer;
  /** Whether ACLs are configured (for `X-Consul-Default-ACL-Policy`). */
  defaultPolicy: 'allow' | 'deny';
  blocking: BlockingContext;
}

/** Headers Consul puts on answers of queries that go through the servers. */
export function queryHeaders(ctx: Ctx, index: number): Record<string, string> {
  const cache: Record<string, string> = ctx.query.has('cached') ? { 'X-Cache': 'MISS' } : {};
  return {
    ...cache,
    'X-Consul-Index': String(index),
    'X-Consul-KnownLeader': 'true',
    'X-Consul-LastContact': '0',
    'X-Consul-Default-ACL-Policy': ctx.defaultPolicy,
  };
}

/** Writes a compact JSON answer (Consul pretty-prints only with `?pretty`). */
export function sendJson(
  ctx: Ctx,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const pretty = ctx.query.has('pretty');
  const text = pretty ? `${JSON.stringify(value, null, 4)}\n` : JSON.stringify(value);
  ctx.res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  ctx.res.end(text);
}

/** Writes a text/plain answer (Consul's error bodies). */
export function sendText(
  res: ServerResponse,
  status: number,
  text: string | Buffer,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    ...headers,
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** Parses a JSON request body; an empty body decodes as `undefined`. */
export function jsonBody(ctx: Ctx): unknown {
  if (ctx.body.length === 0) return undefined;
  try {
    return JSON.parse(ctx.body.toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `Request decode failed: ${(err as Error).message}`);
  }
}

/** Consul's 405 for a path that exists but not for this method. */
export function requireMethod(ctx: Ctx, ...allowed: string[]): void {
  if (!allowed.includes(ctx.method)) {
    ctx.res.setHeader('Allow', allowed.join(','));
    throw new HttpError(405, `method ${ctx.method} not allowed`);
  }
}

/** Rejects `?dc=` naming a datacenter other than the agent's, as Consul does (500). */
export function checkDatacenter(ctx: Ctx, known: readonly string[]): void {
  const dc = ctx.query.get('dc');
  if (dc !== null && dc !== '' && !known.includes(dc)) throw new HttpError(500, 'No path to datacenter');
}
