// Watches files for replacement however it is done: written in place, renamed over, deleted and written again, or swapped by a Kubernetes volume's `..data` link.
import { type FSWatcher, statSync, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

/** Options of {@link watchFiles}. */
export interface FileWatchOptions {
  /** Called once things are quiet after a change was seen (by an event or the poll). */
  readonly onChange: () => void;
  /** Quiet time after the last event before `onChange`, ms. Default 50. */
  readonly debounceMs?: number;
  /**
   * How often each file's identity (device, inode, size, modification and change times, after
   * following links) is compared with the last one seen, in case an event was missed, ms; a
   * difference is a change. 0 = never. Default 10 000.
   */
  readonly pollMs?: number;
}

/** A running {@link watchFiles}. */
export interface FileWatch {
  /** Stops watching: no `onChange` after this. */
  close(): void;
}

/**
 * A Kubernetes ConfigMap or Secret volume's own entries: the kubelet writes a new `..<timestamp>`
 * directory, points `..data_tmp` at it and renames that over `..data`, so a file's visible name
 * (a link to `..data/<name>`) never appears in an event when the volume is updated.
 */
function kubernetesEntry(name: string): boolean {
  return name.startsWith('..');
}

/** What `stat` says of `file` after following links, or why it cannot: equal strings = no change. */
function identity(file: string): string {
  try {
    const s = statSync(file, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    return `error:${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
}

/**
 * Watches `files` (paths, made absolute) through their directories, so a file replaced by rename or
 * deleted and written again is seen, and so is a Kubernetes volume update: an event in a file's
 * directory naming the file, or any `..`-prefixed entry (`..data`, `..data_tmp`, the kubelet's
 * timestamped payload directories), or no name at all, schedules `onChange` after `debounceMs` of
 * quiet. Each time, the directory watches are opened again first: a directory reached through a
 * link (a volume key with a `/` in its path) is the old payload directory until then, and is gone
 * once the kubelet removes it. The poll catches what no event reports (a file that is a link into
 * another directory, a watch that could not be opened). A change seen while the caller is still
 * reloading from the last call schedules another call: the caller lets it read again.
 */
export function watchFiles(files: readonly string[], options: FileWatchOptions): FileWatch {
  const paths = files.map((f) => resolve(f));
  const names = new Map<string, Set<string>>();
  for (const file of paths) {
    const dir = dirname(file);
    if (!names.has(dir)) names.set(dir, new Set());
    names.get(dir)!.add(basename(file));
  }
  let watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  const seen = () => paths.map(identity).join('\n');
  let last = seen();

  const fire = () => {
    timer = null;
    if (closed) return;
    arm();
    last = seen();
    options.onChange();
  };
  const schedule = () => {
    if (closed) return;
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(fire, options.debounceMs ?? 50);
    timer.unref();
  };
  function arm(): void {
    for (const w of watchers) w.close();
    watchers = [];
    for (const [dir, wanted] of names) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || wanted.has(String(name)) || kubernetesEntry(String(name))) schedule();
        });
        w.on('error', schedule);
        watchers.push(w);
      } catch {
        // The directory is missing or unreadable now: the poll notices when that changes.
      }
    }
  }
  arm();

  const pollMs = options.pollMs ?? 10_000;
  const poll =
    pollMs > 0
      ? setInterval(() => {
          const now = seen();
          if (now === last) return;
          last = now;
          schedule();
        }, pollMs)
      : null;
  poll?.unref();

  return {
    close() {
      closed = true;
      for (const w of watchers) w.close();
      watchers = [];
      if (timer !== null) clearTimeout(timer);
      if (poll !== null) clearInterval(poll);
    },
  };
}
