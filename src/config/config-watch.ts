// Reloads meshlet's config when its file changes (file-watch.ts, debounced), unless the new text is the one in force or the one last refused.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import type { ReloadTrigger } from '../daemon.ts';
import { type FileWatch, watchFiles } from './file-watch.ts';

/**
 * Quiet time after the config file's last change before it is reloaded, ms: 250. An editor's save
 * is several steps (vim: write a backup, truncate or rename, write, fsync; the kubelet: a new payload
 * directory, `..data_tmp`, rename over `..data`, remove the old one), all within a few ms of each
 * other but not one event: the quiet time makes them one reload, and keeps a half-written file from
 * being read mid-save, while the change still applies well within a second.
 */
export const CONFIG_DEBOUNCE_MS = 250;

/** Options of {@link watchConfigFile}. */
export interface ConfigWatchOptions {
  /** Runs one reload (`Daemon.reload`): resolves true when the new config was applied, false when refused. */
  readonly reload: (trigger: ReloadTrigger) => Promise<boolean>;
  /**
   * A time (ms since the epoch) at or before which the running config was read. A file whose status
   * changed after it (meshlet was starting) is reloaded as soon as the watch starts.
   */
  readonly readBefore: number;
  /** Quiet time after a change, ms. Default {@link CONFIG_DEBOUNCE_MS}. */
  readonly debounceMs?: number;
  /** The watch's identity poll, ms (see `watchFiles`). Default 10 000. */
  readonly pollMs?: number;
}

/** A running {@link watchConfigFile}. */
export interface ConfigWatch {
  /**
   * Reloads now, whatever the file says (SIGHUP: a `secretFile` or `secretEnv` value may be what
   * changed), and notes the file's text as the one in force or refused. Resolves as `reload` does.
   */
  reload(trigger: ReloadTrigger): Promise<boolean>;
  /** Stops watching: no reload from the file after this (a `reload` call still runs). */
  close(): void;
}

/**
 * Why a reload refuses `file` before parsing it, or null: a file holding nothing but whitespace is
 * a write in progress (an editor truncates before it writes), not an all-default config, which would
 * drop every route and endpoint in force (`{}` is one). Unreadable: null, the loader says why.
 */
export function blankConfigRefusal(file: string): string | null {
  let text: string;
  try {
    if (!statSync(file).isFile()) return null;
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  return text.trim() === ''
    ? 'the file is empty (a write in progress?); write {} for an all-default config'
    : null;
}

/**
 * What identifies the file's text (its SHA-256, or why it cannot be read: equal ids = same text).
 * Only a regular file is read (a FIFO or a device would block or never end).
 */
function fingerprint(file: string): { id: string } {
  let fd: number;
  try {
    // Not opened unless regular: opening a FIFO with no writer blocks.
    if (!statSync(file).isFile()) return { id: 'error:not a regular file' };
    fd = openSync(file, 'r');
  } catch (err) {
    return { id: `error:${(err as NodeJS.ErrnoException).code ?? 'error'}` };
  }
  try {
    if (!fstatSync(fd).isFile()) return { id: 'error:not a regular file' };
    const bytes = readFileSync(fd);
    return { id: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
  } catch (err) {
    return { id: `error:${(err as NodeJS.ErrnoException).code ?? 'error'}` };
  } finally {
    closeSync(fd);
  }
}

/**
 * Watches the config `file` ({@link watchFiles}: in-place writes, rename over, delete and recreate,
 * Kubernetes ConfigMap `..data` swaps, a 10 s identity poll) and reloads through `reload('file')`
 * once changes are quiet for `debounceMs`. The file's bytes are hashed (nothing is parsed: the YAML
 * parser and the schema load with the first reload, not before): text equal to the config in force
 * or to the file last refused does nothing (a `touch`, a save without edits, a ConfigMap rewritten
 * unchanged; a blank file is refused by the reload itself, as a write in progress). A file that is not a regular file (`--config <(…)`) is not watched.
 */
export function watchConfigFile(file: string, options: ConfigWatchOptions): ConfigWatch {
  /** The text of the config in force, and of the file last refused (cleared when one is applied). */
  let inForce: string | null = fingerprint(file).id;
  let refused: string | null = null;
  /** The text a file-triggered reload is under way for. */
  let inFlight: string | null = null;
  /** Each reload's number: a slower, older one does not overwrite what a newer one noted. */
  let asked = 0;
  let noted = 0;
  let closed = false;

  const run = async (trigger: ReloadTrigger, text: string): Promise<boolean> => {
    const n = ++asked;
    const applied = await options.reload(trigger);
    if (n > noted) {
      noted = n;
      if (applied) {
        inForce = text;
        refused = null;
      } else refused = text;
    }
    return applied;
  };

  const onChange = (): void => {
    if (closed) return;
    const { id: text } = fingerprint(file);
    if (text === inForce || text === refused || text === inFlight) return;
    inFlight = text;
    void run('file', text).finally(() => {
      if (inFlight === text) inFlight = null;
    });
  };

  let regular = false;
  let changedWhileStarting = false;
  try {
    const s = statSync(file);
    regular = s.isFile();
    changedWhileStarting = s.ctimeMs > options.readBefore;
  } catch {
    // Missing now: watched all the same, so its return is applied.
    regular = true;
  }
  const watch: FileWatch | null = regular
    ? watchFiles([file], {
        onChange,
        debounceMs: options.debounceMs ?? CONFIG_DEBOUNCE_MS,
        pollMs: options.pollMs,
      })
    : null;
  if (watch !== null && changedWhileStarting) {
    inForce = null;
    onChange();
  }

  return {
    reload: (trigger) => run(trigger, fingerprint(file).id),
    close() {
      closed = true;
      watch?.close();
    },
  };
}
