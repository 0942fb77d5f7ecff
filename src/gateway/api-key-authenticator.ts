// The `apiKey` authenticator: keys from a watched file of SHA-256 hashes, each with a name, a tenant and its own rate limit.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { type FileWatch, watchFiles } from '../config/file-watch.ts';
import type { ApiKeyAuthSpec } from '../config/gateway-schema.ts';
import { SingleLimit } from './rate-limits.ts';
import type { Logger } from '../telemetry/logger.ts';
import {
  type Authenticator,
  type AuthOutcome,
  type Credentials,
  headerValue,
  looksLikeJwt,
  type Principal,
  SKIP,
} from './authenticator.ts';

/** One entry of the keys file. */
export interface ApiKeyEntry {
  readonly name: string;
  /** SHA-256 of the key, lowercase hex. */
  readonly sha256: string;
  readonly tenant: string | undefined;
  readonly rateLimit: { readonly perSecond: number; readonly burst: number | undefined } | undefined;
}

/** Options of {@link ApiKeyAuthenticator}. */
export interface ApiKeyAuthenticatorOptions {
  readonly logger?: Logger;
  /** How often the file is looked at (re-read when it changed) in case a watch event was missed, ms. Default 500. */
  readonly pollMs?: number;
  /** Called with the number of keys after each load (metrics). */
  readonly onLoad?: (keys: number) => void;
}

/** The SHA-256 of a key as the file stores it (lowercase hex): `printf %s KEY | sha256sum`. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** Parses the keys file: a list of entries, or `keys:` holding one. Throws on a bad entry. */
export function parseApiKeys(text: string, file: string): ApiKeyEntry[] {
  const doc: unknown = parse(text);
  const list: unknown = Array.isArray(doc) ? doc : ((doc as { keys?: unknown } | null)?.keys ?? []);
  if (!Array.isArray(list)) throw new Error(`${file}: expected a list of keys (or "keys:" holding one)`);
  const names = new Set<string>();
  return list.map((raw: unknown, i) => {
    const e = raw as Record<string, unknown> | null;
    const where = `${file}: keys[${i}]`;
    if (e === null || typeof e !== 'object') throw new Error(`${where}: expected an object`);
    if (typeof e.name !== 'string' || e.name === '') throw new Error(`${where}: "name" must be a string`);
    if (names.has(e.name)) throw new Error(`${where}: name "${e.name}" is used twice`);
    names.add(e.name);
    if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/i.test(e.sha256)) {
      throw new Error(`${where}: "sha256" must be 64 hex digits (the key's SHA-256)`);
    }
    if (e.tenant !== undefined && typeof e.tenant !== 'string')
      throw new Error(`${where}: "tenant" must be a string`);
    let rateLimit: ApiKeyEntry['rateLimit'];
    if (e.rateLimit !== undefined) {
      const r = e.rateLimit as { perSecond?: unknown; burst?: unknown };
      if (typeof r.perSecond !== 'number' || !(r.perSecond > 0))
        throw new Error(`${where}: rateLimit.perSecond must be > 0`);
      if (r.burst !== undefined && !(typeof r.burst === 'number' && r.burst >= 1))
        throw new Error(`${where}: rateLimit.burst must be ≥ 1`);
      rateLimit = { perSecond: r.perSecond, burst: r.burst as number | undefined };
    }
    return {
      name: e.name,
      sha256: e.sha256.toLowerCase(),
      tenant: e.tenant as string | undefined,
      rateLimit,
    };
  });
}

interface LoadedKey {
  readonly entry: ApiKeyEntry;
  readonly principal: Principal;
}

/**
 * Accepts a key sent in `header` (default `x-api-key`) or as a non-JWT bearer token: its SHA-256
 * is looked up among the file's entries (keys are never stored in clear). The principal carries
 * the key's name, tenant and its own token bucket (kept across file reloads while its rate stays the
 * same). The file is watched ({@link watchFiles}: editors that rename and Kubernetes volume updates
 * included) and looked at every `pollMs`: a key removed from the file is refused within a second.
 * A file that does not parse on reload, or cannot be read (deleted), is logged once and the
 * previous keys stay; at load it is a config error.
 */
export class ApiKeyAuthenticator implements Authenticator {
  readonly name: string;
  readonly challenge: string;
  readonly identityHeaders: readonly string[];
  readonly #spec: ApiKeyAuthSpec;
  readonly #file: string;
  readonly #options: ApiKeyAuthenticatorOptions;
  #keys = new Map<string, LoadedKey>();
  #text = '';
  /** Why the file could not be read at the last poll (logged once per reason), or null. */
  #unreadable: string | null = null;
  readonly #watch: FileWatch;

  /** Loads the file now. @throws Error when it cannot be read or parsed. */
  constructor(name: string, spec: ApiKeyAuthSpec, options: ApiKeyAuthenticatorOptions = {}) {
    this.name = name;
    this.#spec = spec;
    this.#file = resolve(spec.file);
    this.#options = options;
    this.challenge = `ApiKey realm="meshlet", header="${spec.header}"`;
    this.identityHeaders = [spec.nameHeader, spec.tenantHeader];
    this.#load(readFileSync(this.#file, 'utf8'));
    this.#watch = watchFiles([this.#file], { onChange: () => this.reload(), pollMs: options.pollMs ?? 500 });
  }

  /** Keys loaded now. */
  get size(): number {
    return this.#keys.size;
  }

  authenticate(credentials: Credentials): AuthOutcome {
    const sent = credentials.headers[this.#spec.header];
    let key = typeof sent === 'string' ? sent : undefined;
    if (key === undefined) {
      const bearer = credentials.bearer;
      if (bearer === undefined || looksLikeJwt(bearer)) return SKIP;
      key = bearer;
    }
    const found = this.#keys.get(hashApiKey(key));
    return found === undefined
      ? { kind: 'invalid', reason: 'unknown API key' }
      : { kind: 'ok', principal: found.principal };
  }

  /** Re-reads the file; an unchanged file changes nothing, a bad one keeps the old keys. */
  reload(): void {
    let text: string;
    try {
      text = readFileSync(this.#file, 'utf8');
    } catch (err) {
      // Looked at every pollMs: a file that stays missing is logged once, not twice a second.
      const reason = (err as Error).message;
      if (reason !== this.#unreadable)
        this.#options.logger?.error({
          msg: 'api key file unreadable; keeping the loaded keys',
          file: this.#file,
          reason,
        });
      this.#unreadable = reason;
      return;
    }
    if (this.#unreadable !== null) {
      this.#unreadable = null;
      this.#options.logger?.info({ msg: 'api key file readable again', file: this.#file });
    }
    if (text === this.#text) return;
    try {
      this.#load(text);
      this.#options.logger?.info({
        msg: 'api keys reloaded',
        authenticator: this.name,
        keys: this.#keys.size,
      });
    } catch (err) {
      this.#text = text;
      this.#options.logger?.error({
        msg: 'api key file invalid; keeping the loaded keys',
        file: this.#file,
        reason: (err as Error).message,
      });
    }
  }

  #load(text: string): void {
    const entries = parseApiKeys(text, this.#file);
    const old = new Map<string, LoadedKey>();
    for (const k of this.#keys.values()) old.set(k.entry.name, k);
    const next = new Map<string, LoadedKey>();
    const s = this.#spec;
    for (const entry of entries) {
      const prev = old.get(entry.name);
      const sameRate =
        prev !== undefined && JSON.stringify(prev.entry.rateLimit) === JSON.stringify(entry.rateLimit);
      const limit = sameRate
        ? prev.principal.limit
        : entry.rateLimit === undefined
          ? undefined
          : new SingleLimit({
              perSecond: entry.rateLimit.perSecond,
              ...(entry.rateLimit.burst === undefined ? {} : { burst: entry.rateLimit.burst }),
            });
      // Encoded as claims are (headerValue): a name or tenant in non-ASCII reaches the upstream intact.
      const headers = [s.nameHeader, headerValue(entry.name)];
      if (entry.tenant !== undefined) headers.push(s.tenantHeader, headerValue(entry.tenant));
      next.set(entry.sha256, {
        entry,
        principal: {
          auth: this.name,
          subject: undefined,
          tenant: entry.tenant,
          key: entry.name,
          roles: [],
          claims: { key: entry.name, ...(entry.tenant === undefined ? {} : { tenant: entry.tenant }) },
          headers,
          limit,
        },
      });
    }
    this.#keys = next;
    this.#text = text;
    this.#options.onLoad?.(next.size);
  }

  close(): void {
    this.#watch.close();
  }
}
