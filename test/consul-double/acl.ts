// ACL emulation: token lookup as Consul parses it, and Consul's 403 texts for unknown and weak tokens.
import type { IncomingMessage } from 'node:http';
import { HttpError } from './register.ts';
import { uuidFrom } from './store.ts';

/** What a token may do: `write` implies read; `deny` grants nothing. */
export type TokenPolicy = 'read' | 'write' | 'deny';

/** ACL settings. Without them the double, like Consul with ACLs disabled, allows everything. */
export interface AclOptions {
  /** Policy of the anonymous token (requests with no token). Default `'deny'`. */
  defaultPolicy?: 'allow' | 'deny';
  /** Known tokens (secret → policy). Any other non-empty token gets 403 "ACL not found". */
  tokens?: Record<string, TokenPolicy>;
}

/** A resource kind in Consul's rules (`service:read`, `key:write`, ...). */
export type Resource = 'service' | 'node' | 'key' | 'agent' | 'operator';

/**
 * The token of a request, as Consul picks it: `?token=`, then `X-Consul-Token`, then
 * `Authorization: Bearer <token>`. Returns `''` when none was given.
 */
export function requestToken(req: IncomingMessage, query: URLSearchParams): string {
  const q = query.get('token');
  if (q) return q;
  const h = req.headers['x-consul-token'];
  const header = Array.isArray(h) ? h[0] : h;
  if (header) return header;
  const auth = req.headers.authorization;
  if (auth) {
    const parts = auth.split(' ');
    if (parts.length > 1 && parts[0] === 'Bearer') {
      return parts.slice(1).join(' ').trim().split(' ')[0]?.trim() ?? '';
    }
  }
  return '';
}

/** Decides requests for one token. */
export class Authorizer {
  readonly #enabled: boolean;
  readonly #policy: TokenPolicy;
  readonly #token: string;

  constructor(options: AclOptions | undefined, token: string) {
    this.#enabled = options !== undefined;
    this.#token = token;
    if (options === undefined) {
      this.#policy = 'write';
    } else if (token === '' || token === 'anonymous') {
      this.#policy = (options.defaultPolicy ?? 'deny') === 'allow' ? 'write' : 'deny';
    } else {
      const p = options.tokens?.[token];
      if (p === undefined) throw new HttpError(403, 'ACL not found');
      this.#policy = p;
    }
  }

  /** Whether ACLs are on (then results may be filtered). */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** Whether the token may read. */
  canRead(): boolean {
    return this.#policy !== 'deny';
  }

  /** Whether the token may write. */
  canWrite(): boolean {
    return this.#policy === 'write';
  }

  /** Throws Consul's 403 "Permission denied: ..." unless the token has `access` on the resource. */
  require(resource: Resource, access: 'read' | 'write', name?: string): void {
    const ok = access === 'read' ? this.canRead() : this.canWrite();
    if (ok) return;
    const on = name === undefined ? '' : ` on ${JSON.stringify(name)}`;
    if (this.#token === '' || this.#token === 'anonymous') {
      throw new HttpError(
        403,
        `Permission denied: anonymous token lacks permission '${resource}:${access}'${on}. The anonymous token is used implicitly when a request does not specify a token.`,
      );
    }
    throw new HttpError(
      403,
      `Permission denied: token with AccessorID '${uuidFrom(`accessor:${this.#token}`)}' lacks permission '${resource}:${access}'${on}`,
    );
  }
}
