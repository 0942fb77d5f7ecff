// Keeps the Consul ACL token current: registry.consul.tokenFile is read again when it changes on disk, when Consul answers 403, and on reload.
import { statSync } from 'node:fs';
import type { Logger } from '../../telemetry/logger.ts';
import { readToken } from './consul-client.ts';

/** Time between two looks (`stat`) at `tokenFile` for a change, ms. */
export const TOKEN_FILE_POLL_MS = 1000;

/** Where the token comes from: `registry.consul.token` or `registry.consul.tokenFile`. */
export interface TokenSettings {
  token?: string | undefined;
  tokenFile?: string | undefined;
}

/** What takes the token: the Consul client. */
export interface TokenHolder {
  readonly token: string | undefined;
  setToken(token: string | undefined): void;
}

/** Why the token was read again, as logged. */
export type TokenTrigger = 'reload' | 'file changed' | 'refused';

/** Identifies one version of the file: inode, size and mtime (a rename or a rewrite changes it). */
function stampOf(file: string): string | null {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return null;
  }
}

/**
 * The token's source. With `tokenFile`, the file is read again, and a different token used for
 * every later call, without a restart: when the file changes (looked at every `pollMs`; a Vault
 * agent sink or a Kubernetes projected token replaces it), when Consul refuses a call with 403
 * (the running token may be expired or revoked: the file may hold its successor), and on a reload
 * (SIGHUP). A file that cannot be read, or is empty, keeps the running token (logged once per
 * reason). The token itself is never logged.
 */
export class ConsulTokenSource {
  #settings: TokenSettings;
  readonly #holder: TokenHolder;
  readonly #logger: Logger;
  readonly #pollMs: number;
  #stamp: string | null;
  #timer: NodeJS.Timeout | null = null;
  /** The last unreadable-file reason logged, so a lasting one is logged once. */
  #unreadable: string | null = null;

  /**
   * @param pollMs time between two looks at the file, ms. Default {@link TOKEN_FILE_POLL_MS}.
   */
  constructor(settings: TokenSettings, holder: TokenHolder, logger: Logger, pollMs = TOKEN_FILE_POLL_MS) {
    this.#settings = settings;
    this.#holder = holder;
    this.#logger = logger;
    this.#pollMs = pollMs;
    this.#stamp = settings.tokenFile === undefined ? null : stampOf(settings.tokenFile);
  }

  /** Starts looking at the file for changes (nothing to do with an inline `token`). */
  start(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => this.#poll(), this.#pollMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** A reloaded config: takes its `token` / `tokenFile` and reads again at once. */
  reconfigure(settings: TokenSettings): void {
    this.#settings = settings;
    this.#unreadable = null;
    this.#read('reload');
  }

  /** Consul answered 403: reads the file again at once; true when that gave a different token. */
  refused(): boolean {
    if (this.#settings.tokenFile === undefined) return false;
    return this.#read('refused');
  }

  #poll(): void {
    const file = this.#settings.tokenFile;
    if (file === undefined) return;
    const stamp = stampOf(file);
    if (stamp === this.#stamp) return;
    this.#read('file changed');
  }

  /** Reads the token again; true when it differs from the running one (then it is taken). */
  #read(trigger: TokenTrigger): boolean {
    const { token, tokenFile } = this.#settings;
    if (tokenFile !== undefined) this.#stamp = stampOf(tokenFile);
    let next: string | undefined;
    try {
      next = readToken(token, tokenFile);
      if (next === undefined && tokenFile !== undefined && this.#holder.token !== undefined) {
        throw new Error('the file is empty');
      }
    } catch (err) {
      const reason = (err as Error).message;
      if (this.#unreadable !== reason) {
        this.#unreadable = reason;
        this.#logger.error({
          msg: 'consul token file unreadable; keeping the running token',
          tokenFile,
          trigger,
          reason,
        });
      }
      return false;
    }
    this.#unreadable = null;
    if (next === this.#holder.token) return false;
    this.#holder.setToken(next);
    this.#logger.info({
      msg: 'consul token reloaded',
      trigger,
      acl: next === undefined ? 'no token' : 'token set',
    });
    return true;
  }
}
