// Certificate source `files`: reads tls.cert / tls.key / tls.ca, watches their directories, reloads on change.
import { resolve } from 'node:path';
import { type FileWatch, watchFiles } from '../config/file-watch.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { TlsMetrics } from '../telemetry/tls-metrics.ts';
import { isoTime } from '../telemetry/utc-time.ts';
import { loadTlsFiles, type TlsFilePaths, UnusableTlsFilesError } from './certificate-info.ts';
import { ChangeListeners, type TlsMaterial, type TlsSource } from './tls-source.ts';

/** Options of {@link FilesTlsSource}. */
export interface FilesTlsSourceOptions {
  readonly paths: TlsFilePaths;
  /** Trust domain peers must belong to; undefined = any. */
  readonly trustDomain?: string;
  readonly logger: Logger;
  readonly metrics: TlsMetrics;
  /** Quiet time after a file event before reloading, ms. Default 50. */
  readonly debounceMs?: number;
  /** How long an inconsistent set (new key, old certificate) is retried before giving up, ms. Default 3000. */
  readonly settleMs?: number;
  /** Also look at the files this often (re-read when they changed) in case a watch event was missed, ms; 0 = never. Default 10 000. */
  readonly pollMs?: number;
}

/**
 * Loads the three PEM files and watches the directories that hold them ({@link watchFiles}: editors
 * and `cert-manager` style tools replace files by rename, which a file watch would miss, and a
 * Kubernetes Secret volume swaps its `..data` link). A change is reloaded after a
 * short debounce; a set that does not fit together yet (the key written before the certificate, as
 * `meshlet certs issue` and most tools do) is retried until it does or `settleMs` passed, then the
 * failure is logged and counted and the old material stays. A set whose certificate has already
 * expired is refused the same way, at once (waiting does not make it fit): every peer would refuse
 * it, so applying it would turn a working mesh identity into an outage (the Connect CA source
 * refuses an expired leaf too). So is a set node:tls cannot build a secure context from (a key
 * OpenSSL refuses at its default security level, such as RSA-512): `loadTlsFiles` tries it with
 * `tls.createSecureContext` (`checkTlsContext`, as `meshlet config check` does) and throws an
 * `UnusableTlsFilesError`, so at start such a set fails with that line. An unchanged set is not
 * re-applied.
 */
export class FilesTlsSource implements TlsSource {
  readonly kind = 'files' as const;
  readonly #options: FilesTlsSourceOptions;
  readonly #paths: TlsFilePaths;
  readonly #listeners = new ChangeListeners();
  #material: TlsMaterial | null = null;
  #watch: FileWatch | null = null;
  #reloading = false;
  #again = false;
  #stopped = false;

  constructor(options: FilesTlsSourceOptions) {
    this.#options = options;
    const p = options.paths;
    this.#paths = { cert: resolve(p.cert), key: resolve(p.key), ca: resolve(p.ca) };
  }

  async start(): Promise<void> {
    this.#material = await this.#load();
    this.#watch = watchFiles([this.#paths.cert, this.#paths.key, this.#paths.ca], {
      onChange: () => void this.reload(),
      debounceMs: this.#options.debounceMs,
      pollMs: this.#options.pollMs,
    });
  }

  current(): TlsMaterial {
    if (this.#material === null) throw new Error('files TLS source not started');
    return this.#material;
  }

  onChange(listener: (material: TlsMaterial) => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Re-reads the files now (also what a watch event triggers). Resolves when done. */
  async reload(): Promise<void> {
    if (this.#reloading) {
      this.#again = true;
      return;
    }
    this.#reloading = true;
    try {
      do {
        this.#again = false;
        await this.#reloadOnce();
      } while (this.#again && !this.#stopped);
    } finally {
      this.#reloading = false;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#watch?.close();
    this.#watch = null;
  }

  async #reloadOnce(): Promise<void> {
    const deadline = Date.now() + (this.#options.settleMs ?? 3000);
    for (;;) {
      try {
        const next = await this.#load();
        if (this.#stopped) return;
        const old = this.#material;
        if (
          old !== null &&
          old.certPem === next.certPem &&
          old.keyPem === next.keyPem &&
          old.caPem === next.caPem
        )
          return;
        const notAfter = next.cert.notAfter.getTime();
        if (notAfter <= Date.now()) {
          this.#refuse(`tls.cert: ${this.#paths.cert}: expired at ${isoTime(notAfter)}`);
          return;
        }
        this.#material = next;
        this.#listeners.emit(next);
        return;
      } catch (err) {
        if (this.#stopped) return;
        // Refused at once too: waiting does not make OpenSSL take a set whose files fit together.
        if (Date.now() < deadline && !(err instanceof UnusableTlsFilesError)) {
          await new Promise((r) => setTimeout(r, 50).unref());
          continue;
        }
        this.#refuse((err as Error).message);
        return;
      }
    }
  }

  /** Counts and logs a refused set; the current material stays in use. */
  #refuse(reason: string): void {
    this.#options.metrics.reloads.labels('files', 'failed').inc();
    // A warning, as the Connect CA source's: meshlet keeps serving with the previous material.
    this.#options.logger.warn({
      msg: 'tls certificate reload failed; keeping the current certificate',
      source: 'files',
      reason,
    });
  }

  async #load(): Promise<TlsMaterial> {
    const loaded = await loadTlsFiles(this.#paths);
    return {
      certPem: loaded.certPem,
      keyPem: loaded.keyPem,
      caPem: loaded.caPem,
      cert: loaded.cert,
      trustDomain: this.#options.trustDomain,
    };
  }
}
