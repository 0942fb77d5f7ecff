// Replaces a set of files the ways tools do: the kubelet's atomic writer (a `..data` symlink swapped by rename), rename over, delete and recreate.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** How a {@link FileSet} replaces its files. */
export type WriteStyle =
  'kubernetes swap' | 'kubernetes swap, keys in a subdirectory' | 'rename over' | 'delete and recreate';

export const WRITE_STYLES: readonly WriteStyle[] = [
  'kubernetes swap',
  'kubernetes swap, keys in a subdirectory',
  'rename over',
  'delete and recreate',
];

/** Files written together into one directory (a ConfigMap or Secret volume, or a plain directory). */
export interface FileSet {
  /** The directory the set lives in (the volume's mount point). */
  readonly dir: string;
  /** The path a config names for the file `name`. */
  path(name: string): string;
  /** Replaces the set's files with `files` (name → content), synchronously. */
  write(files: Record<string, string>): void;
  /** Removes the directory. */
  remove(): void;
}

/** `..2006_01_02_15_04_05.` as the kubelet formats the prefix of a payload directory (UTC). */
function timestampPrefix(now = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const date = `${now.getUTCFullYear()}_${p(now.getUTCMonth() + 1)}_${p(now.getUTCDate())}`;
  return `..${date}_${p(now.getUTCHours())}_${p(now.getUTCMinutes())}_${p(now.getUTCSeconds())}.`;
}

/**
 * A Kubernetes ConfigMap/Secret volume, written as the kubelet's atomic writer does
 * (pkg/volume/util/atomic_writer.go): the payload goes into a new `..<timestamp>.<random>/`
 * directory, `..data_tmp` → that directory is created and renamed over `..data`, each key's
 * top-level name is a symlink to `..data/<name>` (created once), and the old payload directory is
 * removed. With `subdir`, keys live at `<subdir>/<name>` (a volume `items[].path` with a slash).
 */
function kubernetesVolume(dir: string, subdir: string | undefined): FileSet {
  const data = join(dir, '..data');
  const rel = (name: string) => (subdir === undefined ? name : join(subdir, name));
  return {
    dir,
    path: (name) => join(dir, rel(name)),
    write(files) {
      const old = existsSync(data) ? readlinkSync(data) : undefined;
      const payload = mkdtempSync(join(dir, timestampPrefix()));
      for (const [name, text] of Object.entries(files)) {
        const file = join(payload, rel(name));
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, text, { mode: 0o644 });
      }
      const tmp = join(dir, '..data_tmp');
      symlinkSync(payload.slice(dir.length + 1), tmp);
      renameSync(tmp, data);
      const visible = new Set(Object.keys(files).map((name) => rel(name).split('/')[0]!));
      for (const top of visible) {
        if (!existsSync(join(dir, top))) symlinkSync(join('..data', top), join(dir, top));
      }
      if (old !== undefined) rmSync(join(dir, old), { recursive: true, force: true });
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A plain directory whose files are replaced by writing aside and renaming, or deleted and written again. */
function plainDirectory(dir: string, style: 'rename over' | 'delete and recreate'): FileSet {
  return {
    dir,
    path: (name) => join(dir, name),
    write(files) {
      for (const [name, text] of Object.entries(files)) {
        const file = join(dir, name);
        if (style === 'rename over') {
          writeFileSync(`${file}.tmp`, text);
          renameSync(`${file}.tmp`, file);
        } else {
          if (existsSync(file)) unlinkSync(file);
          writeFileSync(file, text);
        }
      }
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A fresh temp directory whose files `style` replaces. Call `remove()` when done. */
export function fileSet(style: WriteStyle): FileSet {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-files-'));
  switch (style) {
    case 'kubernetes swap':
      return kubernetesVolume(dir, undefined);
    case 'kubernetes swap, keys in a subdirectory':
      return kubernetesVolume(dir, 'conf');
    default:
      return plainDirectory(dir, style);
  }
}
