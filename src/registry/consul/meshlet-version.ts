// meshlet's own version, read once from its package.json (found upwards from this file, in src/ or dist/).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** The `version` of meshlet's package.json, or `"unknown"` when it cannot be found. */
export function meshletVersion(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'meshlet' && typeof pkg.version === 'string') return (cached = pkg.version);
    } catch {
      // not here: look one level up
    }
    dir = dirname(dir);
  }
  return (cached = 'unknown');
}
